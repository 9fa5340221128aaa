// Node 20 lacks Promise.withResolvers (Node 22 has it); some current IPFS libraries use it.
// Loaded with `node --import ./polyfill.mjs` before anything else.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
