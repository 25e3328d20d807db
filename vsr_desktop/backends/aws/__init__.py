"""The AWS backend: S3 for data, Step Functions for the workflow, Batch on GPU Spot for chunks.

boto3 is imported here and below only; core never imports it. The contract between the app,
the CloudFormation stack and the worker is in docs/cloud-contract.md.
"""
