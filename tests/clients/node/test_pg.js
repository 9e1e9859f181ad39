// node-postgres (npm `pg`) against a PostgreSQL-compatible server.
// Environment: QUBEDB_TEST_HOST (127.0.0.1), QUBEDB_TEST_PORT (required),
// QUBEDB_TEST_USER (qubedb), QUBEDB_TEST_DB (qubedb). node-postgres reads
// results in text format only; it sends parameters as text, through the
// extended protocol (unnamed or named prepared statements).
// Exits 1 at the first mismatch, printing what differed.
'use strict';

const assert = require('node:assert/strict');
const { Client } = require('pg');

if (!process.env.QUBEDB_TEST_PORT) {
  console.error('QUBEDB_TEST_PORT is not set');
  process.exit(2);
}
const config = {
  host: process.env.QUBEDB_TEST_HOST || '127.0.0.1',
  port: Number(process.env.QUBEDB_TEST_PORT),
  user: process.env.QUBEDB_TEST_USER || 'qubedb',
  database: process.env.QUBEDB_TEST_DB || 'qubedb',
};
let checks = 0;

function eq(what, got, want) {
  checks++;
  try {
    assert.deepStrictEqual(got, want);
  } catch (e) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

async function expectSqlstate(what, code, fn) {
  checks++;
  try {
    await fn();
  } catch (e) {
    if (e.code !== code) throw new Error(`${what}: want SQLSTATE ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  throw new Error(`${what}: want SQLSTATE ${code}, but it succeeded`);
}

const ts1 = new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789));
const rows = [
  {
    id: 1, big: '9007199254740993', num: '12345.678', t: "héllo, 'world'", b: true, ts: ts1,
    d: '2024-02-29', raw: Buffer.from([0, 1, 0xfe, 0xff]), u: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    j: { a: [1, 2.5, null], b: { c: 'd' } }, ai: [1, -2, 2147483647], at: ['x', 'y z', 'q"uote', '', 'NULL'],
  },
  {
    id: 2, big: '-1', num: '-0.001', t: '', b: false, ts: new Date(Date.UTC(1999, 11, 31, 23, 59, 59)),
    d: '1970-01-01', raw: Buffer.alloc(0), u: '00000000-0000-0000-0000-000000000000',
    j: [1, 'two'], ai: [], at: ['only'],
  },
];
const cols = Object.keys(rows[0]);
const nullRow = Object.fromEntries(cols.map((c) => [c, c === 'id' ? 3 : null]));

async function steps(c) {
  // connect and parameters
  const v = await c.query('SHOW server_version');
  checks++;
  assert.ok(/^\d+/.test(v.rows[0].server_version), 'server_version');
  eq('1 + $1', (await c.query('SELECT 1 + $1::int AS n', [41])).rows, [{ n: 42 }]);
  await c.query("SET TIME ZONE 'UTC'");
  // dates come back as strings, so the test does not depend on the local zone
  const types = require('pg').types;
  types.setTypeParser(1082, (s) => s);

  // create
  await c.query('DROP TABLE IF EXISTS drv_node');
  await c.query(`CREATE TABLE drv_node (
      id integer PRIMARY KEY, big bigint, num numeric(12, 3), t text, b boolean, ts timestamptz,
      d date, raw bytea, u uuid, j jsonb, ai integer[], at text[])`);

  // insert with parameters: unnamed statements, then a named one
  const ph = cols.map((_, i) => `$${i + 1}`).join(', ');
  const asParam = (r) => cols.map((k) => (k === 'j' && r[k] !== null ? JSON.stringify(r[k]) : r[k]));
  const ins = await c.query(`INSERT INTO drv_node (${cols.join(', ')}) VALUES (${ph})`, asParam(rows[0]));
  eq('rowCount', ins.rowCount, 1);
  eq('command', ins.command, 'INSERT');
  await c.query({ name: 'ins', text: `INSERT INTO drv_node VALUES (${ph})`, values: asParam(rows[1]) });
  await c.query({ name: 'ins', text: `INSERT INTO drv_node VALUES (${ph})`, values: asParam(nullRow) });

  // read typed values (text format)
  const r = await c.query(`SELECT ${cols.join(', ')} FROM drv_node ORDER BY id`);
  eq('fields', r.fields.map((f) => f.name), cols);
  eq('field types', r.fields.map((f) => f.dataTypeID), [23, 20, 1700, 25, 16, 1184, 1082, 17, 2950, 3802, 1007, 1009]);
  eq('rows', r.rows, [...rows, nullRow]);
  // the same through a named prepared statement with a parameter, twice
  for (const id of [1, 2]) {
    const p = await c.query({ name: 'byid', text: 'SELECT big, ts, j FROM drv_node WHERE id = $1', values: [id] });
    eq(`prepared row ${id}`, p.rows, [{ big: rows[id - 1].big, ts: rows[id - 1].ts, j: rows[id - 1].j }]);
  }
  // rowMode array and an empty result
  const a = await c.query({ text: 'SELECT id, t FROM drv_node WHERE id > $1 ORDER BY id', values: [1], rowMode: 'array' });
  eq('rowMode array', a.rows, [[2, ''], [3, null]]);
  eq('empty', (await c.query('SELECT id FROM drv_node WHERE false')).rows, []);
  eq('uuid param', (await c.query('SELECT id FROM drv_node WHERE u = $1', [rows[0].u])).rows, [{ id: 1 }]);
  eq('array param', (await c.query('SELECT id FROM drv_node WHERE ai = $1', [[1, -2, 2147483647]])).rows, [{ id: 1 }]);
  eq('Date param', (await c.query('SELECT id FROM drv_node WHERE ts = $1', [ts1])).rows, [{ id: 1 }]);

  // transactions
  await c.query('BEGIN');
  await c.query("INSERT INTO drv_node (id, t) VALUES (10, 'gone')");
  await c.query('ROLLBACK');
  eq('rolled back', (await c.query('SELECT count(*)::int AS n FROM drv_node WHERE id = 10')).rows, [{ n: 0 }]);
  await c.query('BEGIN');
  await c.query("INSERT INTO drv_node (id, t) VALUES (11, 'kept')");
  await c.query('SAVEPOINT s');
  await c.query("INSERT INTO drv_node (id, t) VALUES (12, 'undone')");
  await c.query('ROLLBACK TO SAVEPOINT s');
  await c.query('COMMIT');
  eq('committed', (await c.query('SELECT id FROM drv_node WHERE id >= 10')).rows, [{ id: 11 }]);

  // errors with SQLSTATEs, and the connection keeps working
  await c.query('BEGIN');
  const e = await expectSqlstate('duplicate key', '23505', () => c.query('INSERT INTO drv_node (id) VALUES ($1)', [1]));
  eq('constraint name', e.constraint === undefined || e.constraint === 'drv_node_pkey', true);
  await expectSqlstate('failed transaction', '25P02', () => c.query('SELECT 1'));
  await c.query('ROLLBACK');
  await expectSqlstate('unknown table', '42P01', () => c.query('SELECT * FROM no_such_table'));
  await expectSqlstate('division by zero', '22012', () => c.query('SELECT 1 / $1::int', [0]));
  await expectSqlstate('syntax', '42601', () => c.query('SELEC 1'));
  await expectSqlstate('bad input', '22P02', () => c.query('SELECT $1::int', ['x']));
  await expectSqlstate('not null', '23502', () => c.query('INSERT INTO drv_node (id) VALUES (NULL)'));
  eq('still working', (await c.query('SELECT count(*)::int AS n FROM drv_node')).rows, [{ n: 4 }]);

  // catalog reads the way ORMs on node-postgres (knex, sequelize) list columns
  const info = await c.query(
    `SELECT column_name, data_type, is_nullable FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
    ['drv_node']);
  eq('information_schema.columns', info.rows.slice(0, 3), [
    { column_name: 'id', data_type: 'integer', is_nullable: 'NO' },
    { column_name: 'big', data_type: 'bigint', is_nullable: 'YES' },
    { column_name: 'num', data_type: 'numeric', is_nullable: 'YES' },
  ]);
  const pk = await c.query(
    `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary`, ['drv_node']);
  eq('primary key via pg_index', pk.rows, [{ attname: 'id' }]);

  await c.query('DROP TABLE drv_node');
}

(async () => {
  const c = new Client(config);
  await c.connect();
  try {
    await steps(c);
  } finally {
    await c.end();
  }
  console.log(`node-postgres: passed (${checks} checks)`);
})().catch((e) => {
  console.error('node-postgres: FAILED:', e.stack || e);
  process.exit(1);
});
