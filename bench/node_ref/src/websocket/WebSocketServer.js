// src/websocket/WebSocketServer.js
//
// Verbatim port of guide 001's WebSocketServer class (see
// /work/shared/seeds/001_*.txt). Do not "optimise" this file: it is the
// baseline that tidings is measured against, and its costs (WeakMap lookup
// and Set.has for every client on every channel send, JSON.stringify once
// per recipient) are exactly what the guide ships.
const WebSocket = require('ws');
const jwt = require('jsonwebtoken');
const logger = require('../utils/logger');

class WebSocketServer {
  constructor(server) {
    this.wss = new WebSocket.Server({ 
      server,
      path: '/ws'
    });

    // Store active connections: userId -> Set of WebSocket connections
    this.connections = new Map();

    // Store user metadata: WebSocket -> { userId, connectionTime, lastActivity }
    this.metadata = new WeakMap();

    this.setupWebSocketServer();
    this.startHeartbeat();
  }

  setupWebSocketServer() {
    this.wss.on('connection', (ws, req) => {
      this.handleConnection(ws, req);
    });

    this.wss.on('error', (error) => {
      logger.error('WebSocket Server Error:', error);
    });

    logger.info(`WebSocket server initialized on path /ws`);
  }

  handleConnection(ws, req) {
    try {
      // Extract token from query string
      const url = new URL(req.url, `http://${req.headers.host}`);
      const token = url.searchParams.get('token');
      const userId = url.searchParams.get('userId');

      if (!token || !userId) {
        ws.close(4001, 'Missing authentication credentials');
        logger.warn('WebSocket connection rejected: Missing token or userId');
        return;
      }

      // Verify JWT token
      let decoded;
      try {
        decoded = jwt.verify(token, process.env.JWT_SECRET);
      } catch (error) {
        ws.close(4002, 'Invalid or expired token');
        logger.warn('WebSocket connection rejected: Invalid token');
        return;
      }

      // Verify userId matches token
      if (decoded.userId !== userId) {
        ws.close(4003, 'User ID mismatch');
        logger.warn('WebSocket connection rejected: User ID mismatch');
        return;
      }

      // Store connection
      this.addConnection(userId, ws);

      // Store metadata
      this.metadata.set(ws, {
        userId,
        connectionTime: Date.now(),
        lastActivity: Date.now()
      });

      // Send connection success message
      this.sendToClient(ws, {
        type: 'connected',
        userId,
        timestamp: new Date().toISOString()
      });

      logger.info(`WebSocket connected: User ${userId}`);

      // Handle incoming messages
      ws.on('message', (message) => {
        this.handleMessage(ws, message);
      });

      // Handle disconnection
      ws.on('close', (code, reason) => {
        this.handleDisconnection(ws, code, reason);
      });

      // Handle errors
      ws.on('error', (error) => {
        logger.error('WebSocket connection error:', error);
      });

      // Keep connection alive
      ws.isAlive = true;
      ws.on('pong', () => {
        ws.isAlive = true;
      });

    } catch (error) {
      logger.error('Error handling WebSocket connection:', error);
      ws.close(4000, 'Internal server error');
    }
  }

  handleMessage(ws, message) {
    try {
      const metadata = this.metadata.get(ws);
      if (!metadata) {
        logger.warn('Received message from unknown connection');
        return;
      }

      // Update last activity
      metadata.lastActivity = Date.now();

      // Parse message
      const data = JSON.parse(message.toString());
      logger.debug(`Received message from user ${metadata.userId}:`, data);

      // Handle different message types
      switch (data.type) {
        case 'ping':
          this.sendToClient(ws, { type: 'pong', timestamp: new Date().toISOString() });
          break;

        case 'subscribe':
          this.handleSubscribe(ws, data.channel);
          break;

        case 'unsubscribe':
          this.handleUnsubscribe(ws, data.channel);
          break;

        case 'mark_read':
          this.handleMarkRead(metadata.userId, data.notificationId);
          break;

        default:
          logger.warn(`Unknown message type: ${data.type}`);
          this.sendToClient(ws, { 
            type: 'error', 
            message: 'Unknown message type' 
          });
      }

    } catch (error) {
      logger.error('Error handling message:', error);
      this.sendToClient(ws, { 
        type: 'error', 
        message: 'Failed to process message' 
      });
    }
  }

  handleDisconnection(ws, code, reason) {
    const metadata = this.metadata.get(ws);
    if (metadata) {
      this.removeConnection(metadata.userId, ws);
      logger.info(`WebSocket disconnected: User ${metadata.userId}, Code: ${code}, Reason: ${reason}`);
    }
  }

  handleSubscribe(ws, channel) {
    const metadata = this.metadata.get(ws);
    if (!metadata.channels) {
      metadata.channels = new Set();
    }
    metadata.channels.add(channel);
    this.sendToClient(ws, { 
      type: 'subscribed', 
      channel,
      timestamp: new Date().toISOString() 
    });
    logger.info(`User ${metadata.userId} subscribed to channel: ${channel}`);
  }

  handleUnsubscribe(ws, channel) {
    const metadata = this.metadata.get(ws);
    if (metadata.channels) {
      metadata.channels.delete(channel);
      this.sendToClient(ws, { 
        type: 'unsubscribed', 
        channel,
        timestamp: new Date().toISOString() 
      });
      logger.info(`User ${metadata.userId} unsubscribed from channel: ${channel}`);
    }
  }

  handleMarkRead(userId, notificationId) {
    // Emit event to mark notification as read
    // This will be handled by the notification service
    this.emit('notification:mark_read', { userId, notificationId });
  }

  addConnection(userId, ws) {
    if (!this.connections.has(userId)) {
      this.connections.set(userId, new Set());
    }
    this.connections.get(userId).add(ws);
  }

  removeConnection(userId, ws) {
    const userConnections = this.connections.get(userId);
    if (userConnections) {
      userConnections.delete(ws);
      if (userConnections.size === 0) {
        this.connections.delete(userId);
      }
    }
  }

  sendToClient(ws, data) {
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(data));
    }
  }

  sendToUser(userId, data) {
    const userConnections = this.connections.get(userId);
    if (userConnections) {
      userConnections.forEach((ws) => {
        this.sendToClient(ws, data);
      });
      logger.debug(`Sent message to user ${userId} (${userConnections.size} connections)`);
      return true;
    }
    return false;
  }

  sendToChannel(channel, data) {
    let count = 0;
    this.wss.clients.forEach((ws) => {
      const metadata = this.metadata.get(ws);
      if (metadata && metadata.channels && metadata.channels.has(channel)) {
        this.sendToClient(ws, data);
        count++;
      }
    });
    logger.debug(`Sent message to channel ${channel} (${count} clients)`);
    return count;
  }

  broadcast(data, excludeUserId = null) {
    let count = 0;
    this.wss.clients.forEach((ws) => {
      const metadata = this.metadata.get(ws);
      if (!excludeUserId || metadata.userId !== excludeUserId) {
        this.sendToClient(ws, data);
        count++;
      }
    });
    logger.debug(`Broadcast message to ${count} clients`);
    return count;
  }

  startHeartbeat() {
    const interval = parseInt(process.env.WS_HEARTBEAT_INTERVAL) || 30000;

    this.heartbeatInterval = setInterval(() => {
      this.wss.clients.forEach((ws) => {
        if (ws.isAlive === false) {
          const metadata = this.metadata.get(ws);
          if (metadata) {
            logger.info(`Terminating inactive connection: User ${metadata.userId}`);
          }
          return ws.terminate();
        }

        ws.isAlive = false;
        ws.ping();
      });
    }, interval);

    logger.info(`WebSocket heartbeat started (interval: ${interval}ms)`);
  }

  getStats() {
    const totalConnections = this.wss.clients.size;
    const totalUsers = this.connections.size;
    
    const channelCounts = {};
    this.wss.clients.forEach((ws) => {
      const metadata = this.metadata.get(ws);
      if (metadata && metadata.channels) {
        metadata.channels.forEach((channel) => {
          channelCounts[channel] = (channelCounts[channel] || 0) + 1;
        });
      }
    });

    return {
      totalConnections,
      totalUsers,
      channelCounts,
      timestamp: new Date().toISOString()
    };
  }

  close() {
    if (this.heartbeatInterval) {
      clearInterval(this.heartbeatInterval);
    }
    this.wss.close(() => {
      logger.info('WebSocket server closed');
    });
  }
}

// Make it an event emitter for integration with notification service
const EventEmitter = require('events');
Object.setPrototypeOf(WebSocketServer.prototype, EventEmitter.prototype);

module.exports = WebSocketServer;
