"""Notifications to customers: an outbox of SMS and e-mail messages, sent by adapters.

A domain that must tell a customer something (a complaint's outcome, an extension, a
rejection, the reference of the complaint a new contact was linked to) enqueues a message in
its own transaction (``outbox.enqueue``); a sweep of the timer worker sends what is due
through the adapter for the message's channel (``adapters``) and records what happened
(``models.Notification``). See ``outbox`` for the delivery guarantees.
"""
