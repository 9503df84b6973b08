"""Talking to AWS: credentials, SigV4 signing, regional endpoints, the upstream client, retries."""
