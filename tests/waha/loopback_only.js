// Loaded into real WAHA by the test kit (NODE_OPTIONS=--require): every outgoing TCP connection
// to anything but loopback is refused and logged, so a real session started without a loopback
// proxy can never dial WhatsApp (or anything else) from a test. The kit fails a test whose
// server logged a refusal.
'use strict';
const net = require('net');

const ALLOWED = new Set(['127.0.0.1', '::1', 'localhost', '::ffff:127.0.0.1']);
const original = net.Socket.prototype.connect;

function targetHost(args) {
  let first = args[0];
  if (Array.isArray(first)) first = first[0]; // node's own normalized [options, callback]
  if (first && typeof first === 'object') {
    if (first.path) return null; // a unix socket
    return first.host || 'localhost';
  }
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    return typeof args[1] === 'string' ? args[1] : 'localhost';
  }
  return null; // a unix socket path
}

net.Socket.prototype.connect = function connect(...args) {
  const host = targetHost(args);
  if (host !== null && !ALLOWED.has(host)) {
    process.stderr.write(`[loopback-only] refused a connection to ${host}\n`);
    const error = new Error(`loopback-only: connection to ${host} refused by the test kit`);
    error.code = 'ECONNREFUSED';
    process.nextTick(() => this.destroy(error));
    return this;
  }
  return original.apply(this, args);
};
