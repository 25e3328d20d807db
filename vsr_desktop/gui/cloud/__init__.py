"""The desktop side of the AWS offload: account and stack dialog, send-to-cloud dialog, and
the cloud actions of the jobs panel (cancel, retry, download) run off the GUI thread.

Nothing here imports boto3 at module level: the window must open fast without touching AWS.
"""
