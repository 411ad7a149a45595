// Compiled (never run) by `tsc -p tsconfig.json`: a program written against
// tidings.d.ts and react.d.ts must type-check, and misuse must not.
import { Client, ClientClosed, ClientError, CLOSE_CODES, connect, QueueFull, shouldReconnect } from "../../src/tidings/web/tidings.js";
import type { ClientEvent, Notification, Position } from "../../src/tidings/web/tidings.js";
import { useTidings } from "../../src/tidings/web/react.js";

async function main(): Promise<void> {
  const client = new Client("ws://127.0.0.1:8000/ws", async () => "jwt", {
    ack: true,
    backoffInitial: 0.5,
    transport: "auto",
    positions: { news: { offset: 3, epoch: "e1" } },
  });
  await client.connect();
  const off = client.on("_disconnected", (event) => {
    const again: boolean = event.reconnect;
    const code: number = event.code;
    void again;
    void code;
  });
  off();
  client.on("_resubscribed", (event) => {
    const lost: boolean = event.data.recovered === false;
    void lost;
  });
  client.on("notification", (msg) => {
    const n = msg.data as Notification;
    const title: string | null = n.title;
    void title;
  });
  const subscribed = await client.subscribe("news", { level: ["high", "low"] }, { since: { offset: 1, epoch: "e" } });
  const recovered: boolean | undefined = subscribed.recovered;
  void recovered;
  const read = await client.markRead(["ntf_1"]);
  const unread: number = read.unreadCount;
  await client.markRead({ all: true });
  const page = await client.getNotifications({ unreadOnly: true, limit: 10 });
  const items: Notification[] = page.items;
  const published = await client.publish("room:1", "TYPING", { isTyping: true });
  const messageId: string = published.messageId;
  client.send({ type: "ping" });
  const positions: Record<string, Position> = client.positions;
  for await (const event of client) {
    const e: ClientEvent = event;
    if (e.type === "_connected") break;
  }
  const reconnect: boolean = shouldReconnect(4002) && CLOSE_CODES[4002].reconnect;
  const other = await connect("ws://x/ws", "jwt");
  await other.close();
  try {
    await client.ping();
  } catch (error) {
    if (error instanceof ClientClosed) console.log(error.code, error.reason);
    if (error instanceof ClientError) console.log(error.code, error.details);
    if (error instanceof QueueFull) console.log(error.message);
  }
  // @ts-expect-error: transport must be one of the three names
  new Client("ws://x/ws", "jwt", { transport: "carrier-pigeon" });
  // @ts-expect-error: send() returns nothing to await on
  const nothing: Promise<void> = client.send({ type: "ping" });
  void [unread, items, messageId, positions, reconnect, nothing];
}

function Component(): number {
  const state = useTidings({ url: "ws://x/ws", token: "jwt", channels: ["news"], keep: 10 });
  const status: "idle" | "connecting" | "open" | "reconnecting" | "closed" = state.status;
  void status;
  return state.unreadCount + state.notifications.length;
}

void main;
void Component;
