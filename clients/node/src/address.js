// Address parsing (docs/PROTOCOL.md "Transport").

export const DEFAULT_ADDR = '127.0.0.1:7420';

/**
 * Parses `HOST:PORT`, `tcp://HOST:PORT`, `[IPv6]:PORT`, `unix:/path`, `unix:///path` or a plain path starting
 * with `/`. Returns `{kind: 'tcp', host, port}` or `{kind: 'unix', path}`.
 */
export function parseAddress(addr) {
  if (typeof addr !== 'string' || addr.trim() === '') {
    throw new TypeError(`invalid sessiond address ${JSON.stringify(addr)}`);
  }
  const text = addr.trim();
  if (text.startsWith('/')) return { kind: 'unix', path: text };
  if (text.startsWith('unix:')) {
    let path = text.slice('unix:'.length);
    if (path.startsWith('//')) path = path.slice(2);
    if (!path.startsWith('/')) {
      throw new TypeError(`invalid sessiond address ${JSON.stringify(addr)}: a unix address needs an absolute path`);
    }
    return { kind: 'unix', path };
  }
  let rest = text;
  if (rest.startsWith('tcp://')) rest = rest.slice('tcp://'.length);
  let host;
  let portText;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0 || rest[close + 1] !== ':') {
      throw new TypeError(`invalid sessiond address ${JSON.stringify(addr)}: expected [HOST]:PORT`);
    }
    host = rest.slice(1, close);
    portText = rest.slice(close + 2);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0 || rest.indexOf(':') !== colon) {
      throw new TypeError(`invalid sessiond address ${JSON.stringify(addr)}: expected HOST:PORT`);
    }
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
  }
  if (host === '' || host.includes('/')) {
    throw new TypeError(`invalid sessiond address ${JSON.stringify(addr)}: missing or bad host`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new TypeError(`invalid sessiond address ${JSON.stringify(addr)}: port must be 1-65535`);
  }
  return { kind: 'tcp', host, port: Number(portText) };
}

/** Formats a parsed address back to text (for messages). */
export function formatAddress(parsed) {
  if (parsed.kind === 'unix') return `unix:${parsed.path}`;
  return parsed.host.includes(':') ? `[${parsed.host}]:${parsed.port}` : `${parsed.host}:${parsed.port}`;
}
