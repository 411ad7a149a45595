// Guide 003's "Frontend: Receiving Notifications" example, unchanged; the imports of the
// app's own store and toast functions, which the guide leaves out, come first.
import { addNotificationToStore, showToast } from "../store.js";

import { initializeSocket, addSocketEventHandler } from '../services/socket';

// Initialize socket and register user
const initSocket = async (userId) => {
  try {
    await initializeSocket(userId);
    
    // Listen for notifications
    addSocketEventHandler('notification', handleNotification);
  } catch (error) {
    console.error('Failed to initialize socket:', error);
  }
};

// Handle incoming notifications
const handleNotification = (notification) => {
  // Display notification to user
  console.log('New notification:', notification);
  
  // Add to notification store
  addNotificationToStore(notification);
  
  // Show toast or other UI element
  showToast(notification.message, notification.type);
};

export { initSocket };
