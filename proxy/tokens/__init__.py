"""IVS playback and participant tokens minted by the proxy (docs/tokens.md)."""
