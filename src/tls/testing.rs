//! For tests of the gateway's TLS: a test PKI in a fresh folder and a real rustls client
//! whose records are passed to a [`TlsLink`] by hand.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::{ClientAuth, TlsError, TlsFiles, TlsLink};

/// A test CA, the server's certificate and a client's, in PEM files of a fresh folder.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertificateDer<'static>,
    pub client: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("ws2api-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // In DER order, least specific first (rcgen starts with a CN of its own).
        client_params.distinguished_name = DistinguishedName::new();
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "charger-17");
        let client = client_params.signed_by(&client_key, &issuer).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca.der().clone(),
            client: (
                client.der().clone(),
                PrivatePkcs8KeyDer::from(client_key.serialize_der()).into(),
            ),
        }
    }

    pub fn files(&self, client_ca: bool) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join("server.pem"),
            key: self.dir.join("server.key"),
            client_ca: client_ca.then(|| self.dir.join("ca.pem")),
            client_auth: ClientAuth::Required,
        }
    }

    pub fn client(&self, with_cert: bool) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = crate::tls::provider::provider();
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match with_cert {
            true => builder
                .with_client_auth_cert(vec![self.client.0.clone()], self.client.1.clone_key())
                .unwrap(),
            false => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from("localhost").unwrap();
        ClientConnection::new(Arc::new(config), name).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The client's pending records, as bytes.
pub fn from_client(client: &mut ClientConnection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut bytes).unwrap();
    }
    bytes
}

/// Gives the link's `unsent` to the client; returns the plaintext the client read.
pub fn to_client(
    link: &mut TlsLink,
    client: &mut ClientConnection,
) -> Result<Vec<u8>, rustls::Error> {
    let bytes = std::mem::take(&mut link.unsent);
    let mut reader = &bytes[..];
    let mut plain = Vec::new();
    while !reader.is_empty() {
        client.read_tls(&mut reader).unwrap();
        client.process_new_packets()?;
        let _ = client.reader().read_to_end(&mut plain);
    }
    Ok(plain)
}

/// Runs the handshake to its end; returns the plaintext the server got meanwhile.
pub fn handshake(link: &mut TlsLink, client: &mut ClientConnection) -> Result<Vec<u8>, TlsError> {
    let mut plain = Vec::new();
    for _ in 0..10 {
        let mut input = from_client(client);
        let opened = link.open(&mut input, &mut |p| plain.extend_from_slice(p))?;
        assert_eq!(opened.used, input.len(), "whole flights are used whole");
        to_client(link, client).map_err(TlsError)?;
        if !link.is_handshaking() && !client.is_handshaking() {
            return Ok(plain);
        }
    }
    panic!("handshake did not finish");
}

/// A link past its handshake, and the client at its other end.
pub fn connected(name: &str) -> (Pki, TlsLink, ClientConnection) {
    let pki = Pki::new(name);
    let mut link = TlsLink::new(pki.files(false).load().unwrap()).unwrap();
    let mut client = pki.client(false);
    handshake(&mut link, &mut client).unwrap();
    (pki, link, client)
}
