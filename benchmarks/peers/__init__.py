"""Peers that vidnets is measured against (e.g. the official TFLite MoViNets)."""
