"""Connection-health webhooks (issue 19).

    services --emit()--> EventEmitter --(background)--> Storage queue `{prefix}webhookevents`
    delivery worker (timer job / local loop):
        queue --> health table (state per connection) --> outbox rows per subscription
        outbox --> POST, Standard Webhooks signature, in order per connection, retried
                   with exponential backoff for a day, then the subscription is `failing`

`events.py` (what services call), `signing.py` (Standard Webhooks), `store.py`
(subscriptions, outbox, health rows), `service.py` (the API's rules), `worker.py`
(delivery).
"""
