"""The Gradient (Synthesize) vendor API as a drop-in facade; see README.md in this folder."""
