// The package's version (the server's: pyproject.toml) and the protocol version it
// speaks (protocol.py PROTOCOL_VERSION). tests/test_js_package.py checks both.

export const VERSION = "0.1.0";
export const PROTOCOL_VERSION = 1;
