"""The store's errors, apart from everything else so that the writer process imports little."""


class StoreError(Exception):
    """A backend failure: whatever the caller was about to acknowledge is NOT durable."""


class StoreClosed(StoreError):
    """The store is closing or closed; it takes no more appends."""


class StaleFence(StoreError):
    """An append made under a lease its replica no longer holds (another owner, a newer fencing
    token, or expired): refused, and nothing of it was written."""


class AppendTimedOut(StoreError):
    """An append was not durable within its deadline (a frozen or failing disk): the caller is
    told to retry. It may still commit later; a retry then finds it (the same seq)."""
