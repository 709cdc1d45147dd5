//! `facts.cloud.*` from cloud-init's instance data: shown by `converge facts`, usable in
//! templates and in `nodes.toml`, and a broken file is a located error that changes nothing.

mod support;

use support::Project;

const INSTANCE_DATA: &str = r#"{
  "v1": {"cloud_name": "aws", "instance_id": "i-0123456789abcdef0", "region": "eu-west-1",
         "availability_zone": "eu-west-1b", "platform": "ec2"},
  "ds": {"meta_data": {"instance-type": "t3.small", "ami-id": "ami-0abc",
                       "tags": {"instance": {"role": "cache", "Name": "cache-1"}}}}
}"#;

#[test]
fn facts_show_the_instance_data_of_the_tree() {
    let p = Project::new();
    p.root_file("/run/cloud-init/instance-data.json", INSTANCE_DATA);
    let root = p.root().display().to_string();
    let r = p.run(&["facts", "--root", &root]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let cloud: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("facts.cloud."))
        .collect();
    assert_eq!(
        cloud,
        [
            "facts.cloud.image = \"ami-0abc\"",
            "facts.cloud.instance_id = \"i-0123456789abcdef0\"",
            "facts.cloud.instance_type = \"t3.small\"",
            "facts.cloud.provider = \"aws\"",
            "facts.cloud.region = \"eu-west-1\"",
            "facts.cloud.tags.Name = \"cache-1\"",
            "facts.cloud.tags.role = \"cache\"",
            "facts.cloud.zone = \"eu-west-1b\"",
        ]
    );
}

#[test]
fn without_cloud_init_there_is_no_cloud_fact() {
    let p = Project::new();
    let root = p.root().display().to_string();
    let r = p.run(&["facts", "--json", "--root", &root]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let facts: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(facts.get("cloud").is_none(), "{}", r.stdout);
}

#[test]
fn nodes_toml_classifies_by_a_cloud_tag_and_templates_see_the_instance() {
    let p = Project::new();
    p.root_file("/run/cloud-init/instance-data.json", INSTANCE_DATA);
    p.file(
        "nodes.toml",
        "[[node]]\nfacts = { \"cloud.tags.role\" = \"web\" }\nroles = [\"web\"]\n\n\
         [[node]]\nfacts = { \"cloud.tags.role\" = \"cache\" }\nroles = [\"cache\"]\n",
    );
    p.file(
        "roles/web.toml",
        "[[file]]\npath = \"/etc/web\"\ncontent = \"web\\n\"\n",
    );
    p.file(
        "roles/cache.toml",
        "[[file]]\npath = \"/etc/cache\"\ntemplate = \"cache.hbs\"\n",
    );
    p.file(
        "templates/cache.hbs",
        "{{facts.cloud.instance_id}} {{facts.cloud.instance_type}} in {{facts.cloud.zone}}\n",
    );
    let src = p.src().display().to_string();
    let root = p.root().display().to_string();
    let r = p.run(&["apply", "--source", &src, "--root", &root]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(p.at("/etc/cache")).unwrap(),
        "i-0123456789abcdef0 t3.small in eu-west-1b\n"
    );
    assert!(!p.at("/etc/web").exists());
}

#[test]
fn broken_instance_data_is_a_located_error_and_nothing_changes() {
    let p = Project::new();
    p.root_file(
        "/run/cloud-init/instance-data.json",
        "{\n  \"v1\": {\"region\": eu}\n}\n",
    );
    p.file(
        "roles/a.toml",
        "[[file]]\npath = \"/etc/a\"\ncontent = \"a\\n\"\n",
    );
    let src = p.src().display().to_string();
    let root = p.root().display().to_string();
    let r = p.run(&["apply", "--source", &src, "--root", &root, "--role", "a"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let path = p.at("/run/cloud-init/instance-data.json");
    assert_eq!(
        r.stderr,
        format!(
            "converge: error: {}:2:20: not valid cloud-init instance data: expected value\n",
            path.display()
        )
    );
    assert!(!p.at("/etc/a").exists());
}
