// Third-party IPFS libraries against a running buddy-blocks (server/tests/ipfs_clients.rs runs
// this with BUDDY_URL and BUDDY_TOKEN set). Exits non-zero, saying why, on any mismatch.
//
// 1. ipfs-unixfs-importer chunks a 3 MiB random file into a UnixFS DAG twice: CIDv1 with raw
//    leaves, and CIDv0 with dag-pb leaves.
// 2. Every block is PUT to the server: most through PUT /ipfs/{cid}, every fourth through
//    PUT /block (whose answer must be the CID's sha2-256 digest in hex).
// 3. ipfs-unixfs-exporter reads each file back over a blockstore that GETs /ipfs/{cid} with
//    Accept: application/vnd.ipld.raw and checks every block against its CID's multihash
//    (multiformats' sha2-256) before handing it over; the bytes must equal the file.
// 4. @ipld/car's CarReader parses CAR responses (a raw leaf, the dag-pb leaf blocks with
//    dag-scope=block) and the block inside must verify against its CID.
import { randomBytes } from 'node:crypto'
import { importer } from 'ipfs-unixfs-importer'
import { exporter } from 'ipfs-unixfs-exporter'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { CarReader } from '@ipld/car/reader'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import { equals, toHex } from 'multiformats/bytes'

const url = process.env.BUDDY_URL
const token = process.env.BUDDY_TOKEN
if (!url || !token) throw new Error('BUDDY_URL and BUDDY_TOKEN must be set')
const FILE_BYTES = 3 * 1024 * 1024
const stats = { put: 0, putBlock: 0, get: 0, car: 0 }

function fail (message) {
  throw new Error(message)
}

async function concat (chunks) {
  const parts = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

/** Throws unless `bytes` hash to the CID's sha2-256 multihash. */
async function verify (cid, bytes) {
  if (cid.multihash.code !== sha256.code) fail(`${cid}: not a sha2-256 CID`)
  const digest = await sha256.digest(bytes)
  if (!equals(digest.bytes, cid.multihash.bytes)) fail(`${cid}: the server sent other bytes`)
}

/** The text forms a client may send for `cid`, taken in turn. */
let turn = 0
function cidText (cid) {
  const forms = cid.version === 0
    ? [cid.toString(), cid.toV1().toString(), cid.toV1().toString(base36)]
    : [cid.toString(), cid.toString(base36), cid.toString(base58btc)]
  return forms[turn++ % forms.length]
}

async function put (cid, bytes, viaBlock) {
  const auth = { Authorization: `Bearer ${token}` }
  if (viaBlock) {
    const res = await fetch(`${url}/block`, { method: 'PUT', headers: auth, body: bytes })
    const text = await res.text()
    if (res.status !== 201 && res.status !== 200) fail(`PUT /block: ${res.status} ${text}`)
    if (text !== toHex(cid.multihash.digest)) fail(`PUT /block answered ${text} for ${cid}`)
    stats.putBlock++
    return
  }
  const res = await fetch(`${url}/ipfs/${cidText(cid)}`, { method: 'PUT', headers: auth, body: bytes })
  const text = await res.text()
  if (res.status !== 201 && res.status !== 200) fail(`PUT /ipfs/${cid}: ${res.status} ${text}`)
  stats.put++
}

/** A read-only blockstore over the gateway: every block verified against its CID. */
const gateway = {
  async * get (cid) {
    const res = await fetch(`${url}/ipfs/${cidText(cid)}?format=raw`, {
      headers: { Accept: 'application/vnd.ipld.raw' }
    })
    if (res.status !== 200) fail(`GET /ipfs/${cid}: ${res.status} ${await res.text()}`)
    if (res.headers.get('content-type') !== 'application/vnd.ipld.raw') {
      fail(`GET /ipfs/${cid}: content-type ${res.headers.get('content-type')}`)
    }
    const bytes = new Uint8Array(await res.arrayBuffer())
    await verify(cid, bytes)
    stats.get++
    yield bytes
  },
  async has (cid) {
    const res = await fetch(`${url}/ipfs/${cid}?format=raw`, { method: 'HEAD' })
    return res.status === 200
  }
}

async function carBlock (cid, query) {
  const res = await fetch(`${url}/ipfs/${cid}?${query}`, {
    headers: { Accept: 'application/vnd.ipld.car; version=1; order=dfs; dups=n' }
  })
  if (res.status !== 200) fail(`CAR of ${cid}: ${res.status} ${await res.text()}`)
  const type = res.headers.get('content-type')
  if (!type.startsWith('application/vnd.ipld.car; version=1')) fail(`CAR content-type ${type}`)
  const reader = await CarReader.fromBytes(new Uint8Array(await res.arrayBuffer()))
  const roots = await reader.getRoots()
  if (roots.length !== 1 || !roots[0].equals(cid)) fail(`CAR roots ${roots} for ${cid}`)
  const block = await reader.get(cid)
  if (!block) fail(`CAR of ${cid} lacks the block`)
  await verify(cid, block.bytes)
  stats.car++
  return block.bytes
}

async function roundTrip (name, options, file) {
  const local = new MemoryBlockstore()
  let root
  for await (const entry of importer([{ content: file }], local, options)) root = entry.cid
  if (root.version !== options.cidVersion) fail(`${name}: root ${root} is not CIDv${options.cidVersion}`)
  const blocks = []
  for await (const { cid, bytes } of local.getAll()) blocks.push({ cid, bytes: await concat(bytes) })
  if (blocks.length < 13) fail(`${name}: only ${blocks.length} blocks for ${FILE_BYTES} bytes`)
  for (const [i, { cid, bytes }] of blocks.entries()) await put(cid, bytes, i % 4 === 3)
  // Read the whole file back through /ipfs/, every block verified.
  const entry = await exporter(root, gateway)
  if (entry.type !== 'file') fail(`${name}: exported a ${entry.type}`)
  const back = await concat(entry.content())
  if (!equals(back, file)) fail(`${name}: the file read back differs (${back.length} bytes)`)
  // CAR responses: every leaf as a CAR of dag-scope=block, parsed and verified.
  for (const { cid, bytes } of blocks) {
    if (cid.equals(root)) continue
    const carried = await carBlock(cid, 'format=car&dag-scope=block')
    if (!equals(carried, bytes)) fail(`${name}: CAR of ${cid} carries other bytes`)
  }
  // The root with links: dag-scope=block works; a whole-DAG CAR is refused, never truncated.
  await carBlock(root, 'format=car&dag-scope=block')
  const whole = await fetch(`${url}/ipfs/${root}?format=car&dag-scope=all`)
  if (whole.status !== 400) fail(`${name}: dag-scope=all over a root with links: ${whole.status}`)
  console.log(`${name}: ${root} (${blocks.length} blocks) read back and verified`)
  return root
}

const file = new Uint8Array(randomBytes(FILE_BYTES))
await roundTrip('CIDv1 raw leaves', { cidVersion: 1, rawLeaves: true }, file)
await roundTrip('CIDv0 dag-pb leaves', { cidVersion: 0, rawLeaves: false }, file)
// The probe path of the trustless gateway spec.
const probe = await fetch(`${url}/ipfs/bafkqaaa?format=raw`, { headers: { Accept: 'application/vnd.ipld.raw' } })
if (probe.status !== 200 || (await probe.arrayBuffer()).byteLength !== 0) fail(`probe: ${probe.status}`)
const probeCar = await CarReader.fromBytes(new Uint8Array(await (await fetch(`${url}/ipfs/bafkqaaa?format=car`)).arrayBuffer()))
if (!(await probeCar.getRoots())[0].equals(CID.parse('bafkqaaa'))) fail('probe CAR root')
console.log(`ok: ${JSON.stringify(stats)}`)
