//! Tests of the answer decoder: answers as they come off the wire, whole, split at every
//! offset and byte by byte; framing errors; mangled input.

use super::*;

const MAX: usize = 1 << 20;

/// Decodes every answer in `chunks` (fed in order), starting a new decoder on the unconsumed
/// remainder after each answer, and calls `finish` at the end if an answer is open.
fn decode_stream(chunks: &[&[u8]], max_body: usize, head: bool) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut dec = AnswerDecoder::new(max_body, head);
    for chunk in chunks {
        let mut rest = *chunk;
        while !rest.is_empty() {
            let (n, answer) = dec.feed(rest).expect("decode");
            assert!(n <= rest.len());
            rest = &rest[n..];
            match answer {
                Some(a) => {
                    answers.push(a);
                    dec = AnswerDecoder::new(max_body, head);
                }
                None => assert!(rest.is_empty(), "bytes left unconsumed without an answer"),
            }
        }
    }
    if dec.started() {
        answers.push(dec.finish().expect("finish"));
    }
    answers
}

fn decode_one(wire: &[u8]) -> Answer {
    let mut answers = decode_stream(&[wire], MAX, false);
    assert_eq!(answers.len(), 1);
    answers.pop().unwrap()
}

/// Decodes `wire` whole, split at every offset, and one byte at a time; all must agree.
fn decode_all_ways(wire: &[u8], head: bool) -> Vec<Answer> {
    let whole = decode_stream(&[wire], MAX, head);
    for at in 0..=wire.len() {
        let (a, b) = wire.split_at(at);
        assert_eq!(decode_stream(&[a, b], MAX, head), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(decode_stream(&bytes, MAX, head), whole, "byte by byte");
    whole
}

fn feed_err(wire: &[u8], max_body: usize) -> AnswerError {
    let mut dec = AnswerDecoder::new(max_body, false);
    match dec.feed(wire) {
        Err(e) => e,
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Found by the `answer_codec` fuzz target: a bad header name in a line that has
/// no LF yet was reported when fed whole but not when it came in its own piece.
#[test]
fn a_bad_partial_header_line_is_an_error_however_the_bytes_arrive() {
    let whole = b"HTTP/1.1 200 OK\r\nBad Name";
    let mut decoder = AnswerDecoder::new(1 << 16, false);
    let whole_result = decoder.feed(whole);
    assert!(
        matches!(whole_result, Err(AnswerError::Malformed(_))),
        "{whole_result:?}"
    );
    let mut decoder = AnswerDecoder::new(1 << 16, false);
    assert!(matches!(decoder.feed(&whole[..17]), Ok((17, None))));
    assert_eq!(decoder.feed(&whole[17..]), whole_result);
}

// ---- answers ----

#[test]
fn content_length_answer() {
    let wire = b"HTTP/1.1 200 OK\r\n\
                 Content-Type: text/plain\r\n\
                 Content-Length: 5\r\n\
                 \r\n\
                 hello";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!(
        a,
        Answer {
            status: 200,
            headers: hdrs(&[("content-type", "text/plain"), ("content-length", "5")]),
            body: b"hello".to_vec(),
            keep_alive: true,
        }
    );
    assert_eq!(a.header("Content-Type"), Some(&b"text/plain"[..]));
    assert_eq!(a.header("x-missing"), None);
}

#[test]
fn chunked_answer_with_extension_and_trailer() {
    let wire = b"HTTP/1.1 200 OK\r\n\
                 Transfer-Encoding: chunked\r\n\
                 \r\n\
                 5;name=value\r\n\
                 hello\r\n\
                 1A ; x\r\n\
                 , chunked world!!!!!!!!!!!\r\n\
                 0\r\n\
                 X-Trailer: yes\r\n\
                 \r\n";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b"hello, chunked world!!!!!!!!!!!");
    assert!(a.keep_alive);
    assert_eq!(a.header("transfer-encoding"), Some(&b"chunked"[..]));
    assert_eq!(a.header("x-trailer"), None);
}

#[test]
fn empty_200_with_zero_length() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!((a.status, a.body.len(), a.keep_alive), (200, 0, true));
    // Complete as soon as the head is: feed returns the answer with every byte consumed.
    let mut dec = AnswerDecoder::new(MAX, false);
    let (n, answer) = dec.feed(wire).unwrap();
    assert_eq!((n, answer.is_some()), (wire.len(), true));
    assert!(dec.is_done());
    assert_eq!(dec.feed(b"more").unwrap(), (0, None));
}

#[test]
fn no_content_without_length() {
    let wire = b"HTTP/1.1 204 No Content\r\nX-Id: 1\r\n\r\n";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!(
        a,
        Answer {
            status: 204,
            headers: hdrs(&[("x-id", "1")]),
            body: vec![],
            keep_alive: true,
        }
    );
    let wire = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(decode_all_ways(wire, false)[0].body, b"");
}

#[test]
fn head_answer_has_no_body() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    let a = decode_all_ways(wire, true).pop().unwrap();
    assert_eq!((a.status, a.body.len(), a.keep_alive), (200, 0, true));
}

#[test]
fn continue_then_200() {
    let wire = b"HTTP/1.1 100 Continue\r\n\
                 \r\n\
                 HTTP/1.1 103 Early Hints\r\n\
                 Link: </a>\r\n\
                 \r\n\
                 HTTP/1.1 201 Created\r\n\
                 Content-Length: 2\r\n\
                 \r\n\
                 ok";
    let answers = decode_all_ways(wire, false);
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0],
        Answer {
            status: 201,
            headers: hdrs(&[("content-length", "2")]),
            body: b"ok".to_vec(),
            keep_alive: true,
        }
    );
}

#[test]
fn close_delimited_answer_via_finish() {
    let wire = b"HTTP/1.1 200 OK\r\n\
                 Content-Type: text/plain\r\n\
                 \r\n\
                 until the end";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!(a.body, b"until the end");
    assert!(!a.keep_alive);

    let mut dec = AnswerDecoder::new(MAX, false);
    assert_eq!(dec.feed(wire).unwrap(), (wire.len(), None));
    let a = dec.finish().unwrap();
    assert_eq!(
        (a.status, &a.body[..], a.keep_alive),
        (200, &b"until the end"[..], false)
    );
}

#[test]
fn http10_answer_not_kept_alive() {
    let wire = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!((&a.body[..], a.keep_alive), (&b"hi"[..], false));

    let wire = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi";
    assert!(decode_one(wire).keep_alive);
}

#[test]
fn connection_close_answer() {
    let wire = b"HTTP/1.1 200 OK\r\nConnection: upgrade, Close\r\nContent-Length: 3\r\n\r\nbye";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!((&a.body[..], a.keep_alive), (&b"bye"[..], false));
}

#[test]
fn equal_content_lengths_accepted() {
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(decode_one(wire).body, b"abc");
}

#[test]
fn te_with_content_length_is_chunked_and_closes() {
    let wire = b"HTTP/1.1 200 OK\r\n\
                 Content-Length: 100\r\n\
                 Transfer-Encoding: gzip, chunked\r\n\
                 \r\n\
                 3\r\nabc\r\n0\r\n\r\n";
    let a = decode_all_ways(wire, false).pop().unwrap();
    assert_eq!((&a.body[..], a.keep_alive), (&b"abc"[..], false));
}

#[test]
fn pipelined_answers_decode_as_two() {
    let first = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none".as_slice();
    let second = b"HTTP/1.1 202 Accepted\r\n\
                   Transfer-Encoding: chunked\r\n\
                   \r\n\
                   3\r\ntwo\r\n0\r\n\r\n"
        .as_slice();
    let wire = [first, second].concat();

    let mut dec = AnswerDecoder::new(MAX, false);
    let (n, a1) = dec.feed(&wire).unwrap();
    assert_eq!(n, first.len());
    let a1 = a1.unwrap();
    assert_eq!((a1.status, &a1.body[..]), (200, &b"one"[..]));

    let mut dec = AnswerDecoder::new(MAX, false);
    let (n, a2) = dec.feed(&wire[first.len()..]).unwrap();
    assert_eq!(n, second.len());
    let a2 = a2.unwrap();
    assert_eq!((a2.status, &a2.body[..]), (202, &b"two"[..]));

    let all = decode_all_ways(&wire, false);
    assert_eq!(all, vec![a1, a2]);

    // A chunked answer does not eat the next answer's bytes either.
    let wire = [second, first].concat();
    let mut dec = AnswerDecoder::new(MAX, false);
    assert_eq!(dec.feed(&wire).unwrap().0, second.len());
}

// ---- errors ----

#[test]
fn bad_status_line_is_malformed() {
    for wire in [
        &b"HTTP/1.1 abc OK\r\n\r\n"[..],
        b"XTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"garbage\r\n\r\n",
    ] {
        assert!(
            matches!(feed_err(wire, MAX), AnswerError::Malformed(_)),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn bad_chunk_size_is_malformed() {
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        &b"zz\r\n"[..],
        b"\r\n",
        b"-1\r\n",
        b"5x\r\n",
        b"5\nhello\r\n",
        b"3\r\nabcX",
        b"1\r\na\r\n0\r\n\n",
        b"10000000000000000\r\n",
    ] {
        let wire = [&head[..], body].concat();
        assert!(
            matches!(feed_err(&wire, MAX), AnswerError::Malformed(_)),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn bad_content_length_is_malformed() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
    ] {
        assert!(matches!(feed_err(wire, MAX), AnswerError::Malformed(_)));
    }
}

#[test]
fn over_max_body_is_too_large() {
    // Up front, by Content-Length: refused on the head alone.
    let mut dec = AnswerDecoder::new(4, false);
    assert_eq!(
        dec.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        Err(AnswerError::TooLarge)
    );
    assert_eq!(dec.feed(b"hello"), Err(AnswerError::TooLarge));
    // Exactly at the limit is fine.
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour";
    assert_eq!(decode_stream(&[wire], 4, false)[0].body, b"four");
    // Chunked: as chunks accumulate, before the over-limit chunk's data arrives.
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\n";
    assert_eq!(feed_err(wire, 4), AnswerError::TooLarge);
    // Close-delimited bodies are capped too.
    let mut dec = AnswerDecoder::new(4, false);
    dec.feed(b"HTTP/1.1 200 OK\r\n\r\nabc").unwrap();
    assert_eq!(dec.feed(b"de"), Err(AnswerError::TooLarge));
    // A huge Content-Length, and an overflowing one.
    let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    assert_eq!(feed_err(wire, MAX), AnswerError::TooLarge);
}

#[test]
fn oversized_head_is_too_large() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    while wire.len() <= MAX_HEAD {
        wire.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\r\n");
    }
    let err = feed_err(&wire, MAX);
    assert!(
        matches!(err, AnswerError::TooLarge | AnswerError::Malformed(_)),
        "{err:?}"
    );
    let mut long = b"HTTP/1.1 200 OK\r\nX-Long: ".to_vec();
    long.resize(MAX_HEAD + 10, b'a');
    assert_eq!(feed_err(&long, MAX), AnswerError::TooLarge);
    let mut dec = AnswerDecoder::new(MAX, false);
    let mut err = None;
    for b in long.chunks(1) {
        if let Err(e) = dec.feed(b) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(AnswerError::TooLarge));
}

#[test]
fn finish_mid_answer_is_closed() {
    for partial in [
        &b""[..],
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ] {
        let mut dec = AnswerDecoder::new(MAX, false);
        dec.feed(partial).unwrap();
        assert_eq!(dec.started(), !partial.is_empty());
        assert_eq!(dec.finish(), Err(AnswerError::Closed));
        assert_eq!(dec.feed(b"x"), Err(AnswerError::Closed));
    }
}

#[test]
fn no_panic_on_mangled_input() {
    let seeds: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nbody",
    ];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const NOISE: &[u8] = b"0123456789abcdefABCDEF;:, \t\r\n\x00\xffHTTP/1.chunked";
    for round in 0..3000 {
        let mut wire = seeds[round % seeds.len()].to_vec();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % (wire.len() + 1);
            let noise = NOISE[(next() as usize) % NOISE.len()];
            match next() % 3 {
                0 => wire.insert(at, noise),
                1 if at < wire.len() => {
                    wire.remove(at);
                }
                _ if at < wire.len() => wire[at] = noise,
                _ => {}
            }
        }
        let max_body = (next() % 8) as usize;
        let mut dec = AnswerDecoder::new(max_body, next() % 5 == 0);
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let step = 1 + (next() as usize) % rest.len();
            match dec.feed(&rest[..step]) {
                Ok((n, answer)) => {
                    assert!(n <= step);
                    if answer.is_some() {
                        dec = AnswerDecoder::new(max_body, false);
                    } else {
                        assert_eq!(n, step);
                    }
                    rest = &rest[n..];
                }
                Err(_) => break,
            }
        }
        let _ = dec.finish();
    }
}
