"""The load generator: real MCP SDK clients, open/closed loop, HDR histograms."""
