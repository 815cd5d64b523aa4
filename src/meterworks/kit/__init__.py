"""Pure building blocks: money, decimals, periods, the clock and ids. No I/O here."""
