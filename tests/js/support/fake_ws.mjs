// A scripted stand-in for the browser WebSocket, for state-machine tests under fake timers.
// Every constructed socket is recorded in FakeWebSocket.instances; the test opens, feeds and closes it.
export class FakeWebSocket {
  static instances = [];
  static reset() { FakeWebSocket.instances = []; }
  static last() { return FakeWebSocket.instances[FakeWebSocket.instances.length - 1]; }

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.instances.push(this);
  }

  get params() { return Object.fromEntries(new URL(this.url).searchParams.entries()); }

  send(data) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(typeof data === 'string' ? JSON.parse(data) : data);
  }

  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return;
    this.closedWith = { code, reason };
    this.readyState = 3;
    // Like browsers: the close event arrives asynchronously; the client ignores it for stale sockets.
    queueMicrotask(() => this.onclose && this.onclose({ code, reason, wasClean: true }));
  }

  // ---- driven by tests ----
  serverOpen() { this.readyState = 1; this.onopen && this.onopen({}); }
  serverSend(msg) { this.onmessage && this.onmessage({ data: typeof msg === 'string' ? msg : JSON.stringify(msg) }); }
  serverBinary(bytes) { this.onmessage && this.onmessage({ data: bytes }); }
  serverClose(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason, wasClean: code !== 1006 });
  }
}

/** A window-like event target for online/offline/pageshow/visibilitychange hooks. */
export function fakeEnvironment() {
  const win = new EventTarget();
  const doc = new EventTarget();
  doc.visibilityState = 'visible';
  win.document = doc;
  return win;
}
