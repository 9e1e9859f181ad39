//! A minimal protocol client over a raw socket: to see exact command tags
//! and ReadyForQuery statuses, and to send what no driver sends.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type Msg = (u8, Vec<u8>);

pub struct Raw {
    pub stream: TcpStream,
    pub params: Vec<(String, String)>,
    pub key_data: Option<Vec<u8>>,
}

pub fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        match Self::connect_with(addr, &[]).await {
            Ok(raw) => raw,
            Err(e) => panic!("startup failed: {}", String::from_utf8_lossy(&e)),
        }
    }

    /// Connects with more startup parameters; `Err` holds the body of the
    /// ErrorResponse that refused them.
    pub async fn connect_with(addr: SocketAddr, extra: &[(&str, &str)]) -> Result<Raw, Vec<u8>> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut body = Vec::new();
        body.extend_from_slice(&196608i32.to_be_bytes());
        for (k, v) in [("user", "qubedb"), ("database", "qubedb")].iter().chain(extra) {
            cstr(&mut body, k);
            cstr(&mut body, v);
        }
        body.push(0);
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        stream.write_all(&m).await.expect("startup");
        let mut raw = Raw { stream, params: Vec::new(), key_data: None };
        for (kind, body) in raw.until_ready().await {
            match kind {
                b'S' => {
                    let mut parts = body.split(|b| *b == 0);
                    let k = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                    let v = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                    raw.params.push((k, v));
                }
                b'K' => raw.key_data = Some(body),
                b'R' => assert_eq!(body, [0, 0, 0, 0], "AuthenticationOk"),
                b'E' => return Err(body),
                _ => {}
            }
        }
        Ok(raw)
    }

    pub async fn read_msg(&mut self) -> Option<Msg> {
        let kind = self.stream.read_u8().await.ok()?;
        let len = self.stream.read_i32().await.ok()?;
        let mut body = vec![0; (len - 4) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some((kind, body))
    }

    /// Messages up to and including ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.read_msg().await {
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// One message, as it is.
    pub async fn send(&mut self, kind: u8, body: &[u8]) {
        self.stream.write_all(&frame(kind, body)).await.expect("send");
    }

    /// Sends a simple Query without waiting for the answer.
    pub async fn send_query(&mut self, sql: &str) {
        let mut body = Vec::new();
        cstr(&mut body, sql);
        self.send(b'Q', &body).await;
    }

    /// A simple Query.
    pub async fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut body = Vec::new();
        cstr(&mut body, sql);
        self.stream.write_all(&frame(b'Q', &body)).await.expect("send");
        self.until_ready().await
    }

    /// Parse of a named statement, then Sync.
    pub async fn parse_named(&mut self, name: &str, sql: &str) -> Vec<Msg> {
        let mut p = Vec::new();
        cstr(&mut p, name);
        cstr(&mut p, sql);
        p.extend_from_slice(&0i16.to_be_bytes());
        let mut all = frame(b'P', &p);
        all.extend(frame(b'S', &[]));
        self.stream.write_all(&all).await.expect("send");
        self.until_ready().await
    }

    /// Bind of a named statement (no parameters) to the unnamed portal,
    /// Execute, Sync.
    pub async fn execute_named(&mut self, name: &str) -> Vec<Msg> {
        let mut b = Vec::new();
        cstr(&mut b, "");
        cstr(&mut b, name);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut e = Vec::new();
        cstr(&mut e, "");
        e.extend_from_slice(&0i32.to_be_bytes());
        let mut all = frame(b'B', &b);
        all.extend(frame(b'E', &e));
        all.extend(frame(b'S', &[]));
        self.stream.write_all(&all).await.expect("send");
        self.until_ready().await
    }

    /// Parse (with declared types), Bind (binary or text parameters and
    /// result formats), Execute, Sync.
    pub async fn extended(
        &mut self,
        sql: &str,
        types: &[u32],
        params: &[Option<&[u8]>],
        formats: &[i16],
    ) -> Vec<Msg> {
        let mut p = Vec::new();
        cstr(&mut p, "");
        cstr(&mut p, sql);
        p.extend_from_slice(&(types.len() as i16).to_be_bytes());
        for t in types {
            p.extend_from_slice(&t.to_be_bytes());
        }
        let mut b = Vec::new();
        cstr(&mut b, "");
        cstr(&mut b, "");
        b.extend_from_slice(&(formats.len() as i16).to_be_bytes());
        for f in formats {
            b.extend_from_slice(&f.to_be_bytes());
        }
        b.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for v in params {
            match v {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        let mut e = Vec::new();
        cstr(&mut e, "");
        e.extend_from_slice(&0i32.to_be_bytes());
        let mut all = frame(b'P', &p);
        all.extend(frame(b'B', &b));
        all.extend(frame(b'E', &e));
        all.extend(frame(b'S', &[]));
        self.stream.write_all(&all).await.expect("send");
        self.until_ready().await
    }
}

/// CommandComplete tags in order.
pub fn tags(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.0 == b'C')
        .map(|m| String::from_utf8_lossy(m.1.strip_suffix(&[0]).unwrap_or(&m.1)).into_owned())
        .collect()
}

/// DataRow values as text.
pub fn data_rows(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.0 == b'D')
        .map(|m| {
            let b = &m.1;
            let n = i16::from_be_bytes([b[0], b[1]]) as usize;
            let mut at = 2;
            let mut row = Vec::new();
            for _ in 0..n {
                let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                at += 4;
                if len < 0 {
                    row.push(None);
                } else {
                    let len = len as usize;
                    row.push(Some(String::from_utf8_lossy(&b[at..at + len]).into_owned()));
                    at += len;
                }
            }
            row
        })
        .collect()
}

/// A field of the first ErrorResponse.
pub fn error_field(msgs: &[Msg], code: u8) -> Option<String> {
    let e = msgs.iter().find(|m| m.0 == b'E')?;
    e.1.split(|b| *b == 0)
        .find(|f| f.first() == Some(&code))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
}
