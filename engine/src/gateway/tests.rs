//! Tests of the gateway rules: routing, negotiation (format, Accept, CAR parameters), answer
//! headers and CAR bytes, against the spec's examples.

use super::*;

const HELLO_RAW: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";
const HELLO_V0: &str = "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4";

fn raw(query: &str, accept: Option<&str>) -> Result<Negotiated, Refusal> {
    negotiate(query.as_bytes(), accept.map(str::as_bytes))
}

fn car(scope: DagScope, dups: Dups) -> Format {
    Format::Car { scope, dups }
}

#[test]
fn format_comes_from_the_query_first_then_accept() {
    let from = |query, accept| raw(query, accept).map(|n| (n.format, n.source));
    assert_eq!(
        from("format=raw", Some("application/vnd.ipld.car")),
        Ok((Format::Raw, FormatSource::Query))
    );
    assert_eq!(
        from("", Some("application/vnd.ipld.raw")),
        Ok((Format::Raw, FormatSource::Accept))
    );
    assert_eq!(
        from("format=car", None),
        Ok((car(DagScope::All, Dups::No), FormatSource::Query))
    );
    assert_eq!(
        from(
            "dag-scope=block",
            Some("application/vnd.ipld.car; version=1; order=dfs; dups=y")
        ),
        Ok((car(DagScope::Block, Dups::Yes), FormatSource::Accept))
    );
    assert_eq!(
        from("format=car&car-dups=y&entity-bytes=0:*", None),
        Ok((car(DagScope::Entity, Dups::Yes), FormatSource::Query))
    );
}

#[test]
fn accept_picks_the_highest_quality_variant_it_can_produce() {
    let format = |accept| raw("", Some(accept)).map(|n| n.format);
    assert_eq!(
        format("application/vnd.ipld.car;q=0.5, application/vnd.ipld.raw"),
        Ok(Format::Raw)
    );
    assert_eq!(
        format("application/vnd.ipld.raw;q=0.2, application/vnd.ipld.car;q=0.9"),
        Ok(car(DagScope::All, Dups::No))
    );
    assert_eq!(
        format("application/vnd.ipld.car;order=foo, application/vnd.ipld.raw;q=0.1"),
        Ok(Format::Raw)
    );
    assert_eq!(format("APPLICATION/VND.IPLD.RAW"), Ok(Format::Raw));
    assert_eq!(
        format("text/html, application/vnd.ipld.raw;q=0.5, */*;q=0.8"),
        Ok(Format::Raw)
    );
}

#[test]
fn no_format_is_400_and_nothing_producible_is_406() {
    let status = |query, accept| raw(query, accept).map_err(|r| r.status);
    assert_eq!(status("", None), Err(400));
    assert_eq!(status("", Some("*/*")), Err(406));
    assert_eq!(status("", Some("text/html")), Err(406));
    assert_eq!(
        status("", Some("application/vnd.ipld.car; version=2")),
        Err(406)
    );
    assert_eq!(status("", Some("application/vnd.ipld.raw;q=0")), Err(406));
    assert_eq!(status("", Some("application/vnd.ipld.raw;q=2")), Err(406));
    assert_eq!(status("format=tar", None), Err(400));
    assert_eq!(status("format=car&car-version=2", None), Err(400));
    assert_eq!(status("format=car&car-order=foo", None), Err(400));
    assert_eq!(status("format=car&car-dups=maybe", None), Err(400));
    assert_eq!(status("format=car&dag-scope=everything", None), Err(400));
}

#[test]
fn routes_map_cids_onto_block_requests() {
    let hash = BlockHash::of(b"hello world");
    let get = route(Method::Get, HELLO_V0.as_bytes(), b"format=raw", None);
    assert!(matches!(get, Ok(IpfsRequest::Read { hash: h, head_only: false, .. }) if h == hash));
    let head = route(Method::Head, HELLO_RAW.as_bytes(), b"format=car", None);
    assert!(matches!(
        head,
        Ok(IpfsRequest::Read {
            head_only: true,
            ..
        })
    ));
    assert_eq!(
        route(Method::Put, HELLO_RAW.as_bytes(), b"", None),
        Ok(IpfsRequest::Put { hash })
    );
    assert_eq!(
        route(Method::Delete, HELLO_V0.as_bytes(), b"", None),
        Ok(IpfsRequest::Delete { hash })
    );
    assert!(matches!(
        route(Method::Get, b"bafkqaaa", b"format=raw", None),
        Ok(IpfsRequest::ReadInline {
            head_only: false,
            ..
        })
    ));
}

#[test]
fn bad_routes_are_refused_with_the_spec_statuses() {
    let status = |method, rest: &str, query: &str| {
        route(method, rest.as_bytes(), query.as_bytes(), None).map_err(|r| r.status)
    };
    assert_eq!(status(Method::Get, "", "format=raw"), Err(400));
    assert_eq!(status(Method::Get, "not-a-cid", "format=raw"), Err(400));
    assert_eq!(status(Method::Put, "not-a-cid", ""), Err(400));
    let sha512 = format!("f01551340{}", "ab".repeat(64));
    assert_eq!(status(Method::Get, &sha512, "format=raw"), Err(400));
    assert_eq!(
        status(Method::Get, &format!("{HELLO_RAW}/a"), "format=car"),
        Err(400)
    );
    assert_eq!(status(Method::Put, "bafkqaaa", ""), Err(400));
    assert_eq!(status(Method::Get, HELLO_RAW, ""), Err(400));
    let post = route(Method::Post, HELLO_RAW.as_bytes(), b"", None).unwrap_err();
    assert_eq!((post.status, post.allow), (405, Some(IPFS_METHODS)));
}

#[test]
fn raw_response_head_has_every_header_the_spec_asks() {
    let cid = ContentId::parse(HELLO_RAW.as_bytes()).unwrap();
    let path = format!("/ipfs/{HELLO_RAW}");
    let answer = Answer {
        cid: &cid,
        negotiated: raw("", Some("application/vnd.ipld.raw")).unwrap(),
        path: path.as_bytes(),
        query: b"x=1",
    };
    let mut out = Vec::new();
    answer.write_head(&mut out, 200, None, Some(11), Persistence::KeepOpen);
    let text = String::from_utf8(out).unwrap();
    for line in [
        "HTTP/1.1 200 OK\r\n".to_owned(),
        "Content-Type: application/vnd.ipld.raw\r\n".to_owned(),
        format!("ETag: \"{HELLO_RAW}.raw\"\r\n"),
        "Cache-Control: public, max-age=29030400, immutable\r\n".to_owned(),
        "X-Content-Type-Options: nosniff\r\n".to_owned(),
        format!("Content-Disposition: attachment; filename=\"{HELLO_RAW}.bin\"\r\n"),
        "Vary: Accept\r\n".to_owned(),
        format!("Content-Location: /ipfs/{HELLO_RAW}?format=raw&x=1\r\n"),
        "Content-Length: 11\r\n".to_owned(),
    ] {
        assert!(text.contains(&line), "{line:?} missing from {text}");
    }
    assert!(answer.not_modified(Some(format!("\"{HELLO_RAW}.raw\"").as_bytes())));
    assert!(!answer.not_modified(Some(format!("\"{HELLO_RAW}\"").as_bytes())));
}

#[test]
fn the_longest_response_prefix_fits_its_bound() {
    // The longest canonical CID of a stored block: a 10-byte codec varint, base32.
    let long = format!("f01ffffffffffffffffff011220{}", "ab".repeat(32));
    let cid = ContentId::parse(long.as_bytes()).unwrap();
    assert!(cid.canonical().len() >= 70, "{}", cid.canonical());
    let path = format!("/ipfs/{}", cid.canonical());
    let query = "q".repeat(CONTENT_LOCATION_BYTES_MAX - path.len() - 12);
    for format in [Format::Raw, car(DagScope::Entity, Dups::Yes)] {
        let answer = Answer {
            cid: &cid,
            negotiated: Negotiated {
                format,
                source: FormatSource::Accept,
            },
            path: path.as_bytes(),
            query: query.as_bytes(),
        };
        assert!(
            answer.content_location().is_some(),
            "at the bound it is sent"
        );
        let mut out = Vec::new();
        let range: &[u8] = b"bytes 524287-524287/524288";
        match format {
            Format::Raw => {
                let keep = Persistence::KeepAlive10;
                answer.write_head(&mut out, 206, Some(range), Some(1), keep);
            }
            Format::Car { .. } => {
                let keep = Persistence::KeepAlive10;
                answer.write_head(&mut out, 200, None, Some(u64::MAX), keep);
                write_car_prefix(&mut out, &cid, 524_288);
            }
        }
        assert!(
            out.len() <= RESPONSE_PREFIX_BYTES_MAX,
            "{} bytes",
            out.len()
        );
    }
    let long_query = "q".repeat(CONTENT_LOCATION_BYTES_MAX);
    let too_long = Answer {
        cid: &cid,
        negotiated: Negotiated {
            format: Format::Raw,
            source: FormatSource::Accept,
        },
        path: path.as_bytes(),
        query: long_query.as_bytes(),
    };
    assert_eq!(too_long.content_location(), None);
}

#[test]
fn car_prefix_matches_a_carv1_written_by_the_js_car_library() {
    // @ipld/car CarWriter.create([cid]) + put({cid, bytes: "hello world"}), hex.
    let cid = ContentId::parse(HELLO_RAW.as_bytes()).unwrap();
    let mut out = Vec::new();
    write_car_prefix(&mut out, &cid, 11);
    out.extend_from_slice(b"hello world");
    let expected = "3aa265726f6f747381d82a58250001551220b94d27b9934d3e08a52e52d7da7dab\
                    fac484efe37a5380ee9088f7ace2efcde96776657273696f6e012f01551220b94d27\
                    b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde968656c6c6f\
                    20776f726c64";
    assert_eq!(hex(&out), expected);
    assert_eq!(car_len(&cid, 11), out.len() as u64);
    let identity = ContentId::parse(b"bafkqaaa").unwrap();
    let mut out = Vec::new();
    write_car_prefix(&mut out, &identity, 0);
    assert_eq!(
        hex(&out),
        "19a265726f6f747381d82a4500015500006776657273696f6e01"
    );
}

#[test]
fn dag_pb_links_are_found_and_garbage_has_none() {
    // PBNode { Links: [PBLink { Hash: 34 bytes }], Data: 08 02 }
    let mut with_link = vec![0x12, 0x24, 0x0a, 0x22, 0x12, 0x20];
    with_link.extend_from_slice(&[7u8; 32]);
    with_link.extend_from_slice(&[0x0a, 0x02, 0x08, 0x02]);
    assert!(dag_pb_has_links(&with_link));
    assert!(!dag_pb_has_links(&[0x0a, 0x02, 0x08, 0x02]));
    assert!(!dag_pb_has_links(&[]));
    assert!(!dag_pb_has_links(&[0x0a, 0xff]));
    assert!(!dag_pb_has_links(&[0xff; 12]));
}

#[test]
fn a_car_of_a_dag_with_links_is_refused_unless_block_scope() {
    let v0 = ContentId::parse(HELLO_V0.as_bytes()).unwrap();
    let mut node = vec![0x12, 0x24, 0x0a, 0x22, 0x12, 0x20];
    node.extend_from_slice(&[7u8; 32]);
    let answer = |scope| Answer {
        cid: &v0,
        negotiated: Negotiated {
            format: car(scope, Dups::No),
            source: FormatSource::Query,
        },
        path: b"/ipfs/x",
        query: b"",
    };
    assert_eq!(
        answer(DagScope::All)
            .check_block_suffices(&node)
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(answer(DagScope::Block).check_block_suffices(&node), Ok(()));
    assert_eq!(
        answer(DagScope::All).check_block_suffices(&[0x0a, 0x00]),
        Ok(())
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
