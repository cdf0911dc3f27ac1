"""Compose's one-shot storage set-up: the recordings bucket, and its object notifications to
the service (``/webhooks/storage``), on MinIO. Idempotent: run again, it changes nothing.

Configured by the environment (``S3_ENDPOINT``, ``S3_BUCKET``, ``S3_NOTIFY_ARN`` and the usual
``AWS_*`` credentials); runs in the service's image, whose boto3 it uses.
"""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError

ATTEMPTS = 30


def main() -> int:
    endpoint, bucket = os.environ["S3_ENDPOINT"], os.environ["S3_BUCKET"]
    arn = os.environ.get("S3_NOTIFY_ARN", "")
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for attempt in range(ATTEMPTS):
        try:
            s3.head_bucket(Bucket=bucket)
            print(f"bucket {bucket} exists")
            break
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
                raise
            s3.create_bucket(Bucket=bucket)
            print(f"created bucket {bucket}")
            break
        except EndpointConnectionError:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(1)  # MinIO still starting: try again
    if arn:
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
        print(f"notifications of {bucket} go to {arn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
