//! Cloud facts: what cloud-init learned about this instance, as `facts.cloud.*`.
//!
//! cloud-init writes `/run/cloud-init/instance-data.json` on every boot: a standard `v1`
//! section (instance id, region, zone, cloud name) and the datasource's raw metadata under
//! `ds`, where the instance type, image and tags live in each provider's own shape. This
//! module reads the file (world-readable; the sensitive variant is not needed) and maps the
//! providers' shapes onto one set of names, so `nodes.toml` can say
//! `facts = { "cloud.tags.role" = "web" }` on any cloud.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where cloud-init leaves its instance data, relative to the root.
pub const INSTANCE_DATA: &str = "run/cloud-init/instance-data.json";

/// What the cloud says about this instance. Fields the provider does not publish are empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudFacts {
    /// cloud-init's name for the cloud: `aws`, `azure`, `gce`, `openstack`, ...
    pub provider: String,
    /// The instance id, e.g. `i-0abc...`.
    pub instance_id: String,
    /// The region, e.g. `eu-west-1`.
    pub region: String,
    /// The availability zone, e.g. `eu-west-1a`.
    pub zone: String,
    /// The instance type or VM size, e.g. `t3.micro`.
    pub instance_type: String,
    /// The image the instance booted from (an AMI id, an Azure image URN, ...).
    pub image: String,
    /// Tags (AWS instance tags, Azure tags, OpenStack metadata; a DigitalOcean tag `x` is
    /// `x = "true"`).
    pub tags: BTreeMap<String, String>,
}

/// cloud-init's instance data is there but unusable.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read cloud-init instance data: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the JSON object cloud-init writes.
    #[error("{path}:{line}:{col}: not valid cloud-init instance data: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads the instance data under `root`; `None` where cloud-init has not run.
pub fn read(root: &Path) -> Result<Option<CloudFacts>, CloudError> {
    let path = root.join(INSTANCE_DATA);
    // As in a chroot: a link in the tree stays in the tree, and a fifo is refused unread.
    let inside = Path::new("/").join(INSTANCE_DATA);
    let text = match crate::system::tree_file::read_in_root(root, &inside) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CloudError::Read { path, source }),
    };
    parse(&path, &text).map(Some)
}

/// Maps instance data text (shown as `path` in errors) onto [`CloudFacts`].
pub fn parse(path: &Path, text: &str) -> Result<CloudFacts, CloudError> {
    let data: Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        CloudError::Invalid {
            path: path.to_path_buf(),
            line: e.line(),
            col: e.column(),
            message: message.to_owned(),
        }
    })?;
    if !data.is_object() {
        return Err(CloudError::Invalid {
            path: path.to_path_buf(),
            line: 1,
            col: 1,
            message: "expected a JSON object".into(),
        });
    }
    let v1 = &data["v1"];
    let meta = &data["ds"]["meta_data"];
    let identity = &data["ds"]["dynamic"]["instance-identity"]["document"];
    let azure = &meta["imds"]["compute"];
    let first = |candidates: &[&Value]| {
        candidates
            .iter()
            .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
            .unwrap_or_default()
            .to_owned()
    };
    let image = first(&[
        &v1["image_id"],
        &meta["ami-id"],
        &identity["imageId"],
        &meta["image_id"],
    ]);
    let image = if image.is_empty() {
        azure_image(azure)
    } else {
        image
    };
    Ok(CloudFacts {
        provider: first(&[&v1["cloud_name"], &v1["platform"]]),
        instance_id: first(&[&v1["instance_id"], &meta["instance-id"]]),
        region: first(&[&v1["region"], &identity["region"], &azure["location"]]),
        zone: first(&[
            &v1["availability_zone"],
            &meta["placement"]["availability-zone"],
            &azure["zone"],
        ]),
        instance_type: first(&[
            &v1["instance_type"],
            &meta["instance-type"],
            &identity["instanceType"],
            &azure["vmSize"],
        ]),
        image,
        tags: tags(meta),
    })
}

/// Azure names a marketplace image by `publisher:offer:sku:version` (its URN), a custom one
/// by its resource id.
fn azure_image(compute: &Value) -> String {
    let image = &compute["storageProfile"]["imageReference"];
    if let Some(id) = image["id"].as_str().filter(|s| !s.is_empty()) {
        return id.to_owned();
    }
    let parts: Vec<&str> = ["publisher", "offer", "sku", "version"]
        .iter()
        .filter_map(|k| image[*k].as_str())
        .collect();
    if parts.len() == 4 && parts.iter().all(|p| !p.is_empty()) {
        parts.join(":")
    } else {
        String::new()
    }
}

/// Tags in each provider's shape: AWS `tags.instance` (instance metadata tags), Azure
/// `imds.compute.tagsList`, OpenStack `meta`, DigitalOcean a list of names.
fn tags(meta: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut add_map = |map: &serde_json::Map<String, Value>| {
        for (k, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out.insert(k.clone(), value);
        }
    };
    if let Some(map) = meta["tags"]["instance"].as_object() {
        add_map(map);
    }
    if let Some(map) = meta["meta"].as_object() {
        add_map(map);
    }
    if let Some(list) = meta["imds"]["compute"]["tagsList"].as_array() {
        for tag in list {
            if let (Some(k), Some(v)) = (tag["name"].as_str(), tag["value"].as_str()) {
                out.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    if let Some(list) = meta["tags"].as_array() {
        for name in list.iter().filter_map(Value::as_str) {
            out.insert(name.to_owned(), "true".to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> CloudFacts {
        parse(Path::new("instance-data.json"), json).unwrap()
    }

    #[test]
    fn aws_instance_data_maps_onto_cloud_facts() {
        let f = parsed(
            r#"{"v1": {"cloud_name": "aws", "instance_id": "i-0abc", "region": "eu-west-1",
                       "availability_zone": "eu-west-1b", "platform": "ec2"},
                "ds": {"meta_data": {"instance-type": "t3.micro", "ami-id": "ami-123",
                                     "tags": {"instance": {"role": "web", "Name": "web-1"}}},
                       "dynamic": {"instance-identity": {"document": {"imageId": "ami-123"}}}}}"#,
        );
        assert_eq!(
            f,
            CloudFacts {
                provider: "aws".into(),
                instance_id: "i-0abc".into(),
                region: "eu-west-1".into(),
                zone: "eu-west-1b".into(),
                instance_type: "t3.micro".into(),
                image: "ami-123".into(),
                tags: [("Name", "web-1"), ("role", "web")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            }
        );
    }

    #[test]
    fn azure_instance_data_maps_size_image_and_tags() {
        let f = parsed(
            r#"{"v1": {"cloud_name": "azure", "instance_id": "vm-1", "region": "westeurope",
                       "availability_zone": "1"},
                "ds": {"meta_data": {"imds": {"compute": {"vmSize": "Standard_B1s",
                  "storageProfile": {"imageReference": {"id": "", "publisher": "Debian",
                     "offer": "debian-12", "sku": "12", "version": "latest"}},
                  "tagsList": [{"name": "role", "value": "db"}]}}}}}"#,
        );
        assert_eq!(f.instance_type, "Standard_B1s");
        assert_eq!(f.image, "Debian:debian-12:12:latest");
        assert_eq!(f.tags["role"], "db");
        assert_eq!(f.zone, "1");
    }

    #[test]
    fn openstack_metadata_and_digitalocean_tag_lists_are_tags() {
        let os = parsed(r#"{"v1": {}, "ds": {"meta_data": {"meta": {"role": "cache"}}}}"#);
        assert_eq!(os.tags["role"], "cache");
        let dgo = parsed(r#"{"v1": {}, "ds": {"meta_data": {"tags": ["web", "prod"]}}}"#);
        assert_eq!(dgo.tags["prod"], "true");
        assert_eq!(dgo.tags.len(), 2);
    }

    #[test]
    fn missing_instance_data_is_no_cloud() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn broken_instance_data_is_a_located_error() {
        let e = parse(Path::new("/run/x.json"), "{\n  \"v1\": {,\n}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/run/x.json:2:10: not valid cloud-init instance data: key must be a string"
        );
        let e = parse(Path::new("/run/x.json"), "[]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/run/x.json:1:1: not valid cloud-init instance data: expected a JSON object"
        );
    }
}
