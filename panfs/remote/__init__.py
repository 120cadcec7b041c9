"""Talking to the drive: the Open API client and its typed models."""
