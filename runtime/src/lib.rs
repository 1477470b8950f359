//! The ktsu agent runtime: stateless agent reasoning loops with an MCP client (built on `ktsu-shared`).
