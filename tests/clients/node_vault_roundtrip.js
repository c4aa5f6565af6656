#!/usr/bin/env node
// The node-vault npm package as an application would use it: writes a KV v2
// secret, reads it back, deletes it and reads again, against the endpoint it
// is given (for tests/integration/test_real_clients.py: the broker's service
// port, whose TLS ends in the bridge). Prints one JSON line of what it saw;
// exits 1 with the error on any unexpected answer.
//
//   node node_vault_roundtrip.js CONFIG.json
//   CONFIG: {"endpoint", "token", "name", "value_file", "ca_file"?, "resolve"?}
//   resolve: the address the endpoint's host name stands for (curl's
//   --resolve), for a service name that only the cluster's DNS knows.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const requestOptions = {};
if (config.ca_file) requestOptions.ca = fs.readFileSync(config.ca_file);
if (config.resolve) {
  const address = config.resolve;
  requestOptions.agentOptions = {
    lookup: (host, opts, cb) => {
      if (opts && opts.all) cb(null, [{ address, family: 4 }]);
      else cb(null, address, 4);
    },
  };
}
const vault = require(path.join(__dirname, 'node_modules', 'node-vault'))({
  apiVersion: 'v1',
  endpoint: config.endpoint,
  token: config.token,
  requestOptions,
});

const sha256 = (s) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

async function main() {
  const value = fs.readFileSync(config.value_file, 'utf8');
  const p = `secret/data/${config.name}`;
  const written = await vault.write(p, { data: { value } });
  const read = await vault.read(p);
  const got = read.data.data.value;
  await vault.delete(p);
  let afterDelete = null;
  try {
    await vault.read(p);
    afterDelete = 200;
  } catch (e) {
    afterDelete = e.response ? e.response.statusCode : String(e);
  }
  let wrongToken = null;
  try {
    await vault.read(p, { headers: { 'X-Vault-Token': 'not-the-token' } });
    wrongToken = 200;
  } catch (e) {
    wrongToken = e.response ? `${e.response.statusCode} ${e.message}` : String(e);
  }
  console.log(JSON.stringify({
    written_version: written.data.version,
    read_version: read.data.metadata.version,
    read_sha256: sha256(got),
    read_length: Buffer.byteLength(got, 'utf8'),
    exact: got === value,
    after_delete: afterDelete,
    wrong_token: wrongToken,
  }));
}

main().catch((e) => {
  console.error(`node-vault: ${e.stack || e}`);
  process.exit(1);
});
