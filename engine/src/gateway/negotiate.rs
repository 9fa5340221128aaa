//! Content negotiation of `/ipfs/` reads: `?format=`, the `Accept` header with its media ranges
//! and qualities, and the CAR parameters (`version`, `order`, `dups`, `dag-scope`). Pure and
//! total over request bytes; it never allocates per byte nor panics on input.

use super::*;

/// The format from `?format=` (which wins, as the spec says) or else from `Accept`, with the
/// CAR parameters from the chosen `Accept` element and the `car-*`/`dag-scope` query
/// parameters (which win).
pub fn negotiate(query: &[u8], accept: Option<&[u8]>) -> Result<Negotiated, Refusal> {
    let params = QueryParams::parse(query)?;
    let accepted = match accept {
        Some(value) => best_accepted(value),
        None => None,
    };
    let (kind, source) = match (params.format, accepted) {
        (Some(kind), _) => (kind, FormatSource::Query),
        (None, Some(choice)) => (choice.kind, FormatSource::Accept),
        (None, None) if accept.is_none() => return Err(NO_FORMAT),
        (None, None) => return Err(NOT_ACCEPTABLE),
    };
    let format = match kind {
        Kind::Raw => Format::Raw,
        Kind::Car => {
            let from_accept = accepted
                .filter(|choice| choice.kind == Kind::Car)
                .and_then(|choice| choice.dups);
            Format::Car {
                scope: params.scope.unwrap_or(DagScope::All),
                dups: params.dups.or(from_accept).unwrap_or(Dups::No),
            }
        }
    };
    Ok(Negotiated { format, source })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Raw,
    Car,
}

/// The `/ipfs/` query parameters that matter (others, like `filename`, are ignored).
#[derive(Default)]
pub(super) struct QueryParams {
    format: Option<Kind>,
    scope: Option<DagScope>,
    dups: Option<Dups>,
}

impl QueryParams {
    fn parse(query: &[u8]) -> Result<QueryParams, Refusal> {
        let mut params = QueryParams::default();
        for (name, value) in http::query_pairs(query) {
            match name {
                b"format" => {
                    params.format = Some(match value {
                        b"raw" => Kind::Raw,
                        b"car" => Kind::Car,
                        _ => {
                            return Err(refuse(
                                400,
                                "unsupported format: this trustless gateway serves \
                                 format=raw and format=car",
                            ));
                        }
                    });
                }
                b"dag-scope" => {
                    params.scope = Some(match value {
                        b"block" => DagScope::Block,
                        b"entity" => DagScope::Entity,
                        b"all" => DagScope::All,
                        _ => return Err(refuse(400, "dag-scope must be block, entity or all")),
                    });
                }
                // A byte range of the entity implies dag-scope=entity.
                b"entity-bytes" => {
                    params.scope.get_or_insert(DagScope::Entity);
                }
                b"car-version" if value != b"1" => {
                    return Err(refuse(400, "only CAR version 1 is produced"));
                }
                b"car-order" if value != b"dfs" && value != b"unk" => {
                    return Err(refuse(400, "car-order must be dfs or unk"));
                }
                b"car-dups" => {
                    params.dups = Some(match value {
                        b"y" => Dups::Yes,
                        b"n" => Dups::No,
                        _ => return Err(refuse(400, "car-dups must be y or n")),
                    });
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

/// One acceptable element of an `Accept` header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Choice {
    kind: Kind,
    dups: Option<Dups>,
    /// Quality in thousandths (RFC 9110 §12.4.2).
    q: u16,
}

/// The element of `Accept` with the highest `q` (the first on a tie) that names a format this
/// gateway produces, in a variant it can produce. Wildcards choose nothing: a trustless client
/// names the format it verifies.
pub(super) fn best_accepted(value: &[u8]) -> Option<Choice> {
    let mut best: Option<Choice> = None;
    for element in value.split(|&b| b == b',') {
        let Some(choice) = parse_media_range(element) else {
            continue;
        };
        if choice.q > 0 && best.is_none_or(|b| choice.q > b.q) {
            best = Some(choice);
        }
    }
    best
}

pub(super) fn parse_media_range(element: &[u8]) -> Option<Choice> {
    let mut parts = element.split(|&b| b == b';');
    let media_type = trim(parts.next()?);
    let kind = if media_type.eq_ignore_ascii_case(b"application/vnd.ipld.raw") {
        Kind::Raw
    } else if media_type.eq_ignore_ascii_case(b"application/vnd.ipld.car") {
        Kind::Car
    } else {
        return None;
    };
    let mut choice = Choice {
        kind,
        dups: None,
        q: 1000,
    };
    for param in parts {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(at) => (trim(param.get(..at)?), unquote(trim(param.get(at + 1..)?))),
            None => (trim(param), &b""[..]),
        };
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let car = kind == Kind::Car;
        // A CAR variant this gateway cannot produce makes the element unacceptable.
        let unproducible = (car && is(b"version") && value != b"1")
            || (car && is(b"order") && value != b"dfs" && value != b"unk");
        if unproducible {
            return None;
        }
        if is(b"q") {
            choice.q = parse_quality(value)?;
        } else if car && is(b"dups") {
            choice.dups = Some(match value {
                b"y" => Dups::Yes,
                b"n" => Dups::No,
                _ => return None,
            });
        }
    }
    Some(choice)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
pub(super) fn parse_quality(value: &[u8]) -> Option<u16> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(at) => (value.get(..at)?, value.get(at + 1..)?),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        let digit = fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
        thousandths = thousandths * 10 + digit;
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

pub(super) fn unquote(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_prefix(b"\"")
        .and_then(|b| b.strip_suffix(b"\""))
        .unwrap_or(bytes)
}
