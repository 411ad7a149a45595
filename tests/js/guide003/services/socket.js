// Guide 003's frontend socket service (SmartProBono's `services/socket`), as a React app
// written against its Flask-SocketIO backend has it. Pointed at tidings, only two things
// change, both marked "tidings:": the URL, and the handshake's `auth: { token }` (the
// guide's backend relied on `register` alone; tidings takes the user from the token).
import { io } from "socket.io-client";

// tidings: the tidings server (was the Flask backend's URL).
const SOCKET_URL = process.env.REACT_APP_SOCKET_URL || "http://localhost:5000";

let socket = null;
const eventHandlers = {};

export const initializeSocket = (userId) =>
  new Promise((resolve, reject) => {
    if (socket && socket.connected) {
      resolve(socket);
      return;
    }
    socket = io(SOCKET_URL, {
      // tidings: the user's JWT (the app keeps it in localStorage after login).
      auth: { token: localStorage.getItem("token") },
      transports: ["websocket", "polling"],
      reconnection: true,
      reconnectionAttempts: 5,
      reconnectionDelay: 1000,
    });

    socket.on("connect", () => {
      console.log("Socket connected:", socket.id);
      socket.emit("register", { user_id: userId }, (response) => {
        console.log("Registered for notifications:", response);
        resolve(socket);
      });
    });

    socket.on("connect_error", (error) => {
      console.error("Socket connection error:", error.message);
      reject(error);
    });

    socket.on("disconnect", (reason) => {
      console.log("Socket disconnected:", reason);
    });

    Object.entries(eventHandlers).forEach(([event, handlers]) => {
      handlers.forEach((handler) => socket.on(event, handler));
    });
  });

export const addSocketEventHandler = (event, handler) => {
  if (!eventHandlers[event]) eventHandlers[event] = [];
  eventHandlers[event].push(handler);
  if (socket) socket.on(event, handler);
};

export const removeSocketEventHandler = (event, handler) => {
  if (eventHandlers[event]) {
    eventHandlers[event] = eventHandlers[event].filter((h) => h !== handler);
  }
  if (socket) socket.off(event, handler);
};

export const markNotificationsRead = (notificationIds) =>
  new Promise((resolve) => {
    socket.emit("mark_read", { notification_ids: notificationIds }, resolve);
  });

export const getNotifications = (unreadOnly = false) =>
  new Promise((resolve) => {
    socket.once("notifications", resolve);
    socket.emit("get_notifications", { unread_only: unreadOnly });
  });

export const disconnectSocket = () => {
  if (socket) {
    socket.disconnect();
    socket = null;
  }
};
