//! ARN parsing and the Roles Anywhere endpoint that follows from them.

use crate::error::Error;

/// The fields of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub service: String,
    pub region: String,
    pub account: String,
    pub resource: String,
}

impl Arn {
    /// Parses `value`; `option` names the flag it came from, for the error message.
    pub fn parse(value: &str, option: &str) -> Result<Arn, Error> {
        let invalid = |why: &str| {
            Error::Usage(format!(
                "invalid ARN for {option}: {value:?}: {why} \
                 (expected arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)"
            ))
        };
        let mut parts = value.splitn(6, ':');
        let fields: Vec<&str> = parts.by_ref().collect();
        if fields.len() != 6 || fields[0] != "arn" {
            return Err(invalid(
                "not six colon-separated fields starting with \"arn\"",
            ));
        }
        let arn = Arn {
            partition: fields[1].to_owned(),
            service: fields[2].to_owned(),
            region: fields[3].to_owned(),
            account: fields[4].to_owned(),
            resource: fields[5].to_owned(),
        };
        if !matches!(arn.partition.as_str(), "aws" | "aws-cn" | "aws-us-gov") {
            return Err(invalid("unknown partition"));
        }
        if arn.resource.is_empty() {
            return Err(invalid("empty resource"));
        }
        if !arn.account.is_empty()
            && (arn.account.len() != 12 || !arn.account.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("the account must be 12 digits"));
        }
        Ok(arn)
    }

    fn require(self, service: &str, resource_prefix: &str, option: &str) -> Result<Arn, Error> {
        let ok = self.service == service
            && self.resource.starts_with(resource_prefix)
            && self.resource.len() > resource_prefix.len()
            && self.account.len() == 12;
        if !ok {
            return Err(Error::Usage(format!(
                "invalid ARN for {option}: expected arn:{}:{service}:...:{resource_prefix}..., \
                 got service {:?} and resource {:?}",
                self.partition, self.service, self.resource
            )));
        }
        Ok(self)
    }
}

/// The three ARNs of a CreateSession request, validated against each other.
#[derive(Debug, Clone)]
pub struct Identity {
    pub trust_anchor_arn: String,
    pub profile_arn: String,
    pub role_arn: String,
    pub region: String,
    pub partition: String,
}

impl Identity {
    /// Validates the ARNs. The region comes from the trust anchor unless `region_override`
    /// is given; the profile must be in the same region and partition.
    pub fn new(
        trust_anchor_arn: &str,
        profile_arn: &str,
        role_arn: &str,
        region_override: Option<&str>,
    ) -> Result<Identity, Error> {
        let anchor = Arn::parse(trust_anchor_arn, "--trust-anchor-arn")?.require(
            "rolesanywhere",
            "trust-anchor/",
            "--trust-anchor-arn",
        )?;
        let profile = Arn::parse(profile_arn, "--profile-arn")?.require(
            "rolesanywhere",
            "profile/",
            "--profile-arn",
        )?;
        let role = Arn::parse(role_arn, "--role-arn")?.require("iam", "role/", "--role-arn")?;
        if anchor.region.is_empty() {
            return Err(Error::Usage(format!(
                "invalid ARN for --trust-anchor-arn: {trust_anchor_arn:?} has no region"
            )));
        }
        if profile.region != anchor.region {
            return Err(Error::Usage(format!(
                "region mismatch: the trust anchor is in {} but the profile is in {}; \
                 both must be in the same region",
                anchor.region, profile.region
            )));
        }
        if profile.partition != anchor.partition || role.partition != anchor.partition {
            return Err(Error::Usage(format!(
                "partition mismatch: trust anchor {}, profile {}, role {}",
                anchor.partition, profile.partition, role.partition
            )));
        }
        let region = match region_override {
            Some(r) if !is_region_name(r) => {
                return Err(Error::Usage(format!(
                    "invalid --region {r:?}: expected a name such as us-east-1"
                )));
            }
            Some(r) if r != profile.region => {
                return Err(Error::Usage(format!(
                    "region mismatch: --region {r} but the profile is in {}; the region must \
                     match the profile and trust anchor",
                    profile.region
                )));
            }
            Some(r) => r.to_owned(),
            None => anchor.region.clone(),
        };
        Ok(Identity {
            trust_anchor_arn: trust_anchor_arn.to_owned(),
            profile_arn: profile_arn.to_owned(),
            role_arn: role_arn.to_owned(),
            region,
            partition: anchor.partition,
        })
    }

    /// Returns the default endpoint URL for the region and partition.
    pub fn default_endpoint(&self) -> String {
        let suffix = match self.partition.as_str() {
            "aws-cn" => "amazonaws.com.cn",
            _ => "amazonaws.com",
        };
        format!("https://rolesanywhere.{}.{suffix}", self.region)
    }
}

fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/1111";
    const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/2222";
    const ROLE: &str = "arn:aws:iam::123456789012:role/Example";

    #[test]
    fn identity_takes_region_from_trust_anchor() {
        let id = Identity::new(ANCHOR, PROFILE, ROLE, None).unwrap();
        assert_eq!(id.region, "us-east-1");
        assert_eq!(
            id.default_endpoint(),
            "https://rolesanywhere.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn identity_region_override_must_match_profile() {
        let id = Identity::new(ANCHOR, PROFILE, ROLE, Some("us-east-1")).unwrap();
        assert_eq!(id.region, "us-east-1");
        let err = Identity::new(ANCHOR, PROFILE, ROLE, Some("eu-west-1")).unwrap_err();
        assert!(err.to_string().contains("region mismatch"), "{err}");
    }

    #[test]
    fn identity_rejects_region_mismatch() {
        let profile = PROFILE.replace("us-east-1", "eu-west-1");
        let err = Identity::new(ANCHOR, &profile, ROLE, None).unwrap_err();
        assert!(err.to_string().contains("region mismatch"), "{err}");
    }

    #[test]
    fn identity_rejects_swapped_arns() {
        let err = Identity::new(PROFILE, ANCHOR, ROLE, None).unwrap_err();
        assert!(err.to_string().contains("--trust-anchor-arn"), "{err}");
    }

    #[test]
    fn arn_parse_rejects_garbage() {
        for bad in [
            "",
            "arn:aws",
            "nra:aws:iam::123456789012:role/x",
            "arn:mars:iam::1:role/x",
        ] {
            assert!(Arn::parse(bad, "--role-arn").is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoint_follows_partition() {
        let cn = |s: &str| {
            s.replace("arn:aws:", "arn:aws-cn:")
                .replace("us-east-1", "cn-north-1")
        };
        let id = Identity::new(&cn(ANCHOR), &cn(PROFILE), &cn(ROLE), None).unwrap();
        assert_eq!(
            id.default_endpoint(),
            "https://rolesanywhere.cn-north-1.amazonaws.com.cn"
        );
        let gov = |s: &str| {
            s.replace("arn:aws:", "arn:aws-us-gov:")
                .replace("us-east-1", "us-gov-west-1")
        };
        let id = Identity::new(&gov(ANCHOR), &gov(PROFILE), &gov(ROLE), None).unwrap();
        assert_eq!(
            id.default_endpoint(),
            "https://rolesanywhere.us-gov-west-1.amazonaws.com"
        );
    }
}
