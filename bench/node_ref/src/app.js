// src/app.js
//
// The guide requires `./app` without showing it; it is an express app. The
// only route the benchmark needs is POST /api/publish, which fans a message
// out through the guide's own sendToChannel (the wsServer is reached the
// same way the guide's notification service reaches it: app.get('wsServer')).
'use strict';

const crypto = require('crypto');
const express = require('express');

const app = express();

app.use(express.json());

app.post('/api/publish', (req, res) => {
  const { channel, type, data } = req.body || {};
  if (typeof channel !== 'string' || typeof type !== 'string') {
    res.status(400).json({ error: 'channel and type are required strings' });
    return;
  }
  const wsServer = app.get('wsServer');
  const delivered = wsServer.sendToChannel(channel, {
    id: crypto.randomUUID(),
    type,
    channel,
    data,
    timestamp: new Date().toISOString()
  });
  res.json({ delivered });
});

module.exports = app;
