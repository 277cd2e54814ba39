//! Opening the PKCS#11 signer from the command line.

use ra_signer::Signer;

use crate::cli::Options;
use crate::error::Error;

pub fn open(_options: &Options) -> Result<Box<dyn Signer>, Error> {
    Err(Error::Usage("PKCS#11 support is not wired in yet".into()))
}
