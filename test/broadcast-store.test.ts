/**
 * broadcast/store.ts on both databases: broadcasters and registrations created, replaced,
 * paused, deleted (a used broadcaster refused naming its registrations, an unknown broadcaster
 * refused naming the field), status sums, the change stamp the runtime polls, and the sync of the
 * config file's entries.
 */
import { beforeAll, expect, it } from 'vitest';
import { migrate } from '../migrations/runner.ts';
import { ValidationError, parseBroadcaster, parseRegistration } from '../broadcast/model.ts';
import * as store from '../broadcast/store.ts';
import { describeEachDb } from './harness/db.ts';

const hook = parseBroadcaster({ name: 'hook', kind: 'http', config: { url: 'http://127.0.0.1:9/x', secret: 's' } });
const topic = parseBroadcaster({ name: 'topic', kind: 'kafka', config: { topic: 'out' } });
const reg = (name: string, o: Record<string, unknown> = {}) => parseRegistration({ name, broadcaster: 'hook', kind: 'trade', symbol: 'BTC/*', predicate: 'price crosses above 10', ...o });

describeEachDb(['embedded', 'postgres'], (db) => {
  beforeAll(async () => {
    await migrate(db().pool);
  });

  it('creates, replaces, pauses and deletes, refusing what conflicts', async () => {
    const pool = db().pool;
    const stamp0 = await store.changeStamp(pool);
    expect(await store.insertBroadcaster(pool, hook)).toMatchObject({ name: 'hook', kind: 'http', paused: false, source: 'api', config: { secret: 's' } });
    expect(await store.insertBroadcaster(pool, hook)).toBeUndefined();
    expect(await store.insertBroadcaster(pool, topic)).toBeDefined();
    expect((await store.listBroadcasters(pool)).map((b) => b.name)).toEqual(['hook', 'topic']);

    expect(await store.insertRegistration(pool, reg('r1'))).toMatchObject({ name: 'r1', broadcaster: 'hook', kind: 'trade', exchange: '*', symbol: 'BTC/*', predicate: 'price crosses above 10', paused: false, broadcasterPaused: false });
    expect(await store.insertRegistration(pool, reg('r1'))).toBeUndefined();
    await expect(store.insertRegistration(pool, reg('r2', { broadcaster: 'nope' }))).rejects.toMatchObject({ field: 'broadcaster', message: expect.stringMatching(/no broadcaster named "nope"/) });
    await expect(store.putRegistration(pool, reg('r2', { broadcaster: 'nope' }))).rejects.toBeInstanceOf(ValidationError);
    const stamp1 = await store.changeStamp(pool);
    expect(stamp1).not.toBe(stamp0);

    // PUT: created, then unchanged (updated_at kept: no reload), then changed.
    const a = await store.putRegistration(pool, reg('r2'));
    expect(a.created).toBe(true);
    const b = await store.putRegistration(pool, reg('r2'));
    expect(b).toMatchObject({ created: false, registration: { updatedAt: a.registration.updatedAt } });
    const c = await store.putRegistration(pool, reg('r2', { broadcaster: 'topic', predicate: null }));
    expect(c).toMatchObject({ created: false, registration: { broadcaster: 'topic', predicate: null } });

    expect(await store.setRegistrationPaused(pool, 'r1', true)).toBe(true);
    expect(await store.setRegistrationPaused(pool, 'zz', true)).toBe(false);
    // A replacement that does not say `paused` keeps it.
    expect((await store.putRegistration(pool, reg('r1', { exchange: 'sim' }))).registration).toMatchObject({ paused: true, exchange: 'sim' });
    expect(await store.setBroadcasterPaused(pool, 'hook', true)).toBe(true);
    expect(await store.getRegistration(pool, 'r1')).toMatchObject({ paused: true, broadcasterPaused: true });
    expect((await store.putBroadcaster(pool, parseBroadcaster({ ...hook, config: { ...hook.config, timeoutMs: 900 } }))).broadcaster).toMatchObject({ paused: true, config: { timeoutMs: 900 } });

    expect(await store.deleteBroadcaster(pool, 'hook')).toEqual({ registrations: ['r1'] });
    expect(await store.deleteRegistration(pool, 'r1')).toBe(true);
    expect(await store.deleteRegistration(pool, 'r1')).toBe(false);
    expect(await store.deleteBroadcaster(pool, 'hook')).toBe('deleted');
    expect(await store.deleteBroadcaster(pool, 'hook')).toBe('missing');
    expect(await store.changeStamp(pool)).not.toBe(stamp1);
  });

  it('sums a broadcaster status over its registrations', async () => {
    const pool = db().pool;
    await store.putBroadcaster(pool, hook);
    await store.putRegistration(pool, reg('s1'));
    await store.putRegistration(pool, reg('s2'));
    expect(await store.broadcasterStatus(pool, 'hook')).toEqual({ name: 'hook', paused: false, delivered: 0, failed: 0, lastError: null, lastErrorAt: null, lastDeliveredAt: null });
    await pool.query(
      `insert into broadcast_stats (registration, delivered, failed, last_error, last_error_at, last_delivered_at) values
       ('s1', 5, 1, 'old', '2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z'), ('s2', 7, 2, 'new', '2024-01-03T00:00:00Z', '2024-01-01T00:00:00Z')`,
    );
    expect(await store.broadcasterStatus(pool, 'hook')).toEqual({ name: 'hook', paused: false, delivered: 12, failed: 3, lastError: 'new', lastErrorAt: '2024-01-03T00:00:00.000Z', lastDeliveredAt: '2024-01-02T00:00:00.000Z' });
    expect(await store.registrationStatus(pool, 's1')).toMatchObject({ delivered: 5, failed: 1, lastError: 'old' });
    expect(await store.registrationStatus(pool, 'none')).toBeUndefined();
    expect(await store.broadcasterStatus(pool, 'none')).toBeUndefined();
    await store.deleteRegistration(pool, 's1');
    await store.deleteRegistration(pool, 's2');
    expect((await pool.query('select count(*)::int as n from broadcast_stats')).rows[0].n).toBe(0);
  });

  it('syncs the config file entries: upserted as source config, removed when the file drops them', async () => {
    const pool = db().pool;
    const cfgHook = parseBroadcaster({ name: 'cfg-hook', kind: 'http', config: { url: 'http://127.0.0.1:9/y' } });
    const first = await store.syncConfigEntries(pool, { broadcasters: [cfgHook], registrations: [reg('cfg-r', { broadcaster: 'cfg-hook' })] });
    expect(first.written).toEqual(['broadcaster cfg-hook', 'registration cfg-r']);
    expect(await store.getRegistration(pool, 'cfg-r')).toMatchObject({ source: 'config' });
    // A pause set over the API survives a restart; the same file writes nothing.
    await store.setRegistrationPaused(pool, 'cfg-r', true);
    const again = await store.syncConfigEntries(pool, { broadcasters: [cfgHook], registrations: [reg('cfg-r', { broadcaster: 'cfg-hook' })] });
    expect(again).toEqual({ written: [], removed: [], kept: [] });
    expect(await store.getRegistration(pool, 'cfg-r')).toMatchObject({ paused: true });
    // An API registration on the config broadcaster keeps it when the file drops it.
    await store.insertRegistration(pool, reg('api-r', { broadcaster: 'cfg-hook' }));
    const dropped = await store.syncConfigEntries(pool, { broadcasters: [], registrations: [] });
    expect(dropped).toEqual({ written: [], removed: ['registration cfg-r'], kept: ['cfg-hook'] });
    await store.deleteRegistration(pool, 'api-r');
    expect(await store.syncConfigEntries(pool, { broadcasters: [], registrations: [] })).toEqual({ written: [], removed: ['broadcaster cfg-hook'], kept: [] });
    // A config registration naming a broadcaster nowhere: refused naming the field, nothing written.
    await expect(store.syncConfigEntries(pool, { broadcasters: [cfgHook], registrations: [reg('x', { broadcaster: 'ghost' })] })).rejects.toMatchObject({ field: 'broadcaster' });
    expect(await store.getBroadcaster(pool, 'cfg-hook')).toBeUndefined();
  });
});
