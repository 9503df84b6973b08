"""The laptop: the dev proxy and the local credential broker."""
