//! Request-head parsing of typical GET and PUT heads: `parse_head` (fresh buffers for the copied
//! path, query and header values) and `parse_head_with` reusing the buffers of the previous head,
//! as a worker does.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use engine::http::{parse_head, parse_head_with, HeadBuffers, HeadParse};

#[macro_use]
mod common;

const GET: &[u8] =
    b"GET /block/b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9 HTTP/1.1\r\n\
Host: 127.0.0.1:10001\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

const PUT: &[u8] = b"PUT /block HTTP/1.1\r\n\
Host: 127.0.0.1:10001\r\n\
User-Agent: buddy-bench\r\n\
Accept: */*\r\n\
Content-Type: application/octet-stream\r\n\
Content-Length: 4096\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    for (name, head) in [("parse_head/get", GET), ("parse_head/put", PUT)] {
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| match parse_head(black_box(head), 16 * 1024) {
                Ok(HeadParse::Complete { head_len, .. }) => head_len,
                other => panic!("unexpected {other:?}"),
            })
        });
    }
    let mut buffers = HeadBuffers::default();
    for (name, head) in [("parse_head_with/get", GET), ("parse_head_with/put", PUT)] {
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| {
            b.iter(
                || match parse_head_with(black_box(head), 16 * 1024, &mut buffers) {
                    Ok(HeadParse::Complete { head, head_len }) => {
                        buffers.recycle(head);
                        head_len
                    }
                    other => panic!("unexpected {other:?}"),
                },
            )
        });
    }
    // An incomplete head (the common case when a head arrives in pieces).
    let partial = &GET[..GET.len() - 10];
    g.throughput(Throughput::Bytes(partial.len() as u64));
    g.bench_function("parse_head/partial", |b| {
        b.iter(|| parse_head(black_box(partial), 16 * 1024).unwrap())
    });
    g.finish();
}

quick_main!(bench);
