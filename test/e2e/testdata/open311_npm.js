// Drives kontakt with the npm `open311` package (tools/package.json pins
// it), as a Node application would: the five calls of its README, plus
// service discovery and an error. Usage:
//   node open311_npm.js <base URL, e.g. http://127.0.0.1:8080/open311/v2/> <api_key>
// Prints one JSON object: for each call, {err, data} as the client's
// callback received them. The Go test (open311_npm_test.go) judges them.
'use strict';

const Open311 = require('open311');

const [endpoint, apiKey] = process.argv.slice(2);
const client = new Open311({ endpoint: endpoint, apiKey: apiKey, format: 'json' });
const results = {};

// call runs one client method and records what its callback got.
function call(name, fn) {
  return new Promise((resolve) => {
    try {
      fn((err, data) => {
        results[name] = { err: err || null, data: data === undefined ? null : data };
        resolve(data);
      });
    } catch (e) {
      results[name] = { err: 'threw: ' + e.message, data: null };
      resolve(null);
    }
  });
}

(async () => {
  await call('serviceList', (cb) => client.serviceList(cb));
  await call('serviceDefinition', (cb) => client.serviceDefinition('gatubelysning', cb));
  await call('serviceDefinitionUnknown', (cb) => client.serviceDefinition('finns-inte', cb));
  const created = await call('submitRequest', (cb) => client.submitRequest({
    service_code: 'gatubelysning',
    lat: 57.655312,
    long: 12.013987,
    description: 'Lampan vid lekplatsen blinkar hela natten',
    email: 'node.privat@example.se',
    first_name: 'Nils',
    last_name: 'Nodesson',
    attributes: { pole_number: 'GB-4711' },
  }, cb));
  const second = await call('submitRequestAddressId', (cb) => client.submitRequest({
    service_code: 'klotter',
    address_id: 'LM-998877',
    description: 'Klotter på elskåpet',
  }, cb));
  const id = created && created[0] && created[0].service_request_id;
  const id2 = second && second[0] && second[0].service_request_id;
  await call('serviceRequest', (cb) => client.serviceRequest(id, cb));
  // Lists come from a read model a few milliseconds behind a post: ask
  // again until the new requests are in, for at most ten seconds.
  for (const deadline = Date.now() + 10000; ;) {
    const list = await call('serviceRequestsByIds', (cb) => client.serviceRequests([id, id2], cb));
    if (!Array.isArray(list) || list.length === 2 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const deadline = Date.now() + 10000; ;) {
    const list = await call('serviceRequestsFiltered', (cb) => client.serviceRequests({ service_code: 'gatubelysning', status: 'open' }, cb));
    if (!Array.isArray(list) || list.some((r) => r.service_request_id === id) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const discovery = new Open311({ discovery: endpoint + 'discovery.json' });
  await call('serviceDiscovery', (cb) => discovery.serviceDiscovery({ cache: true }, (err, data) => {
    cb(err, { document: data, endpoint: discovery.endpoint, format: discovery.format });
  }));
  process.stdout.write(JSON.stringify(results));
})();
