"""meterworks: usage metering and usage-based billing."""

__version__ = "0.1.0"
