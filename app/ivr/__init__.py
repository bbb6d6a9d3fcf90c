"""The IVR: flows as documents, a pure call machine, and the telephony webhooks."""
