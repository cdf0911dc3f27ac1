"""Object storage adapters (boto3) behind :class:`reconcilers.storage.ObjectStorage`."""
