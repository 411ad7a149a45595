// src/utils/logger.js
//
// Stand-in for the guide's `../utils/logger` (the guide never shows it).
// A production deployment runs at warn level, so debug/info are no-ops:
// the benchmark must not charge the baseline for console I/O that a real
// deployment would not do. warn/error still go to stderr.
'use strict';

const noop = () => {};

module.exports = {
  debug: noop,
  info: noop,
  warn: (...args) => console.warn('[warn]', ...args),
  error: (...args) => console.error('[error]', ...args),
};
