"""Qt-free, boto3-free core: media, models, engine, plan, jobs, settings, errors."""
