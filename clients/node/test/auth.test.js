// Auth: tokens.create turns auth on for new connections; tokens scope tenants; revoke stops a token at once.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Client, Forbidden, NotFound, SessiondError, Unauthenticated } from '../index.js';
import { serverSkipReason, startServer } from '../test-support/helpers.js';

const skip = serverSkipReason();

describe('auth and tokens', { skip }, () => {
  let server;
  const clients = [];
  const connect = async (opts) => {
    const c = await Client.connect({ addr: server.addr, timeoutMs: 10_000, env: {}, ...opts });
    clients.push(c);
    return c;
  };
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    for (const c of clients) await c.close();
    await server?.stop();
  });

  test('tokens, tenants, revocation', async () => {
    // No tokens yet: every connection is admin in tenant `local`.
    const bootstrap = await connect();
    assert.equal(bootstrap.serverInfo.authRequired, false);
    assert.deepEqual((await bootstrap.tokensList()).tokens, []);
    const adminTok = await bootstrap.tokensCreate({ tenant: 'ops', admin: true, label: 'root' });
    assert.equal(typeof adminTok.token, 'string');
    assert.equal(adminTok.info.tenant, 'ops');
    assert.equal(adminTok.info.admin, true);
    assert.equal(adminTok.info.label, 'root');
    assert.equal(typeof adminTok.info.id, 'string');
    assert.equal(adminTok.info.revokedAt, undefined);

    // Auth is on now. Without a token: either hello is refused, or every later call is.
    let anon;
    try {
      anon = await connect();
      assert.equal(anon.serverInfo.authRequired, true);
      await assert.rejects(anon.list(), Unauthenticated);
    } catch (err) {
      assert.ok(err instanceof Unauthenticated, `${err.name}: ${err.message}`);
    }
    // health answers without auth.
    const bare = await connect({ hello: false });
    assert.equal((await bare.health()).status, 'ok');
    await assert.rejects(bare.list(), Unauthenticated);

    const admin = await connect({ token: adminTok.token });
    assert.equal(admin.serverInfo.tenant, 'ops');
    assert.equal(admin.serverInfo.admin, true);
    assert.equal(admin.serverInfo.authRequired, true);
    const userTok = await admin.tokensCreate({ tenant: 'acme', label: 'ci' });
    assert.equal(userTok.info.admin, false);

    const user = await connect({ token: userTok.token });
    assert.equal(user.serverInfo.tenant, 'acme');
    assert.equal(user.serverInfo.admin, false);
    const a = await user.acquire({ key: 'shared-key' });
    assert.equal(a.session.tenant, 'acme');
    await assert.rejects(user.tokensList(), Forbidden);
    await assert.rejects(user.tokensCreate({ tenant: 'acme' }), Forbidden);

    // Another tenant sees nothing of acme's sessions.
    await assert.rejects(admin.get({ key: 'shared-key' }), NotFound);
    await assert.rejects(admin.get({ sessionId: a.session.id }), NotFound);
    const mine = await admin.acquire({ key: 'shared-key' });
    assert.notEqual(mine.session.id, a.session.id);
    assert.equal(mine.session.tenant, 'ops');

    const listed = await admin.tokensList();
    assert.deepEqual(listed.tokens.map((t) => t.tenant).sort(), ['acme', 'ops']);
    assert.ok(listed.tokens.every((t) => t.token === undefined));

    // Revoke: the open connection fails on its next request, and a new one cannot authenticate.
    assert.deepEqual(await admin.tokensRevoke({ id: userTok.info.id }), { revoked: true });
    await assert.rejects(user.get({ sessionId: a.session.id }), Unauthenticated);
    await assert.rejects(connect({ token: userTok.token }), Unauthenticated);
    const after = await admin.tokensList();
    assert.ok(after.tokens.find((t) => t.id === userTok.info.id).revokedAt);
    await assert.rejects(admin.tokensRevoke({ id: 'no-such-token' }), NotFound);

    // A wrong token is refused (one attempt only: failures are rate-limited per peer).
    await assert.rejects(connect({ token: 'not-a-token' }), (err) => err instanceof Unauthenticated || (err instanceof SessiondError && err.reason === 'rate_limited'));
  });
});
