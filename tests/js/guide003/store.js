// The app's notification store and toast, as the test observes them.
export const store = [];
export const toasts = [];
export const listeners = new Set();

export function addNotificationToStore(notification) {
  store.push(notification);
  for (const listener of listeners) listener(notification);
}

export function showToast(message, type) {
  toasts.push({ message, type });
}
