//! `aloftctl artifacts ...`: upload (with a progress bar), list, show and delete artifacts.

use std::io::Read;

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Value, json};

use super::{Remote, s, server_error};
use crate::cli::{ArtifactsCommand, ServerArgs};

fn find_artifact(r: &Remote, key: &str) -> Result<Value> {
    let list = r.get("/v1/deployments/artifacts")?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == key || a["name"] == key)
        .cloned()
        .ok_or_else(|| anyhow!("no artifact with id or name {key:?}"))
}

/// Counts bytes read, for the upload's progress bar.
struct Counting<R> {
    inner: R,
    bar: indicatif::ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// `aloftctl artifacts ...`.
pub(crate) fn artifacts(args: &ServerArgs, command: ArtifactsCommand) -> Result<()> {
    let r = Remote::open(args)?;
    match command {
        ArtifactsCommand::Upload { file, description } => {
            let f = fs_err::File::open(&file)?;
            let size = f.metadata()?.len();
            let boundary = "aloftctl-upload-7f3a9c";
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n{description}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n{size}\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"artifact.mender\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            );
            let tail = format!("\r\n--{boundary}--\r\n");
            let total = head.len() as u64 + size + tail.len() as u64;
            let bar = crate::progress::bytes(size, "uploading", r.json);
            let body = std::io::Cursor::new(head.into_bytes())
                .chain(Counting {
                    inner: f,
                    bar: bar.clone(),
                })
                .chain(std::io::Cursor::new(tail.into_bytes()));
            let url = format!("{}/api/management/v1/deployments/artifacts", r.base);
            let mut resp = r
                .agent
                .post(&url)
                .header("Authorization", format!("Bearer {}", r.token))
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .header("Content-Length", total.to_string())
                .send(ureq::SendBody::from_owned_reader(body))
                .with_context(|| format!("cannot upload to {}", r.base))?;
            bar.finish_and_clear();
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string()?;
            if status != 201 {
                return Err(server_error(status, &text));
            }
            let id = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .unwrap_or_default()
                .to_owned();
            r.done(
                &json!({"id": id, "file": file}),
                &format!("uploaded {} as artifact {id}", file.display()),
            )
        }
        ArtifactsCommand::List => {
            let list = r.get("/v1/deployments/artifacts")?;
            r.print(&list, || {
                let mut rows = vec![vec![
                    "ID".into(),
                    "NAME".into(),
                    "TYPE".into(),
                    "DEVICE TYPES".into(),
                    "SIZE".into(),
                    "SIGNED".into(),
                ]];
                for a in list.as_array().into_iter().flatten() {
                    let kinds: Vec<String> = a["updates"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|u| s(&u["type_info"]["type"]))
                        .collect();
                    rows.push(vec![
                        s(&a["id"]),
                        s(&a["name"]),
                        kinds.join(","),
                        s(&a["device_types_compatible"]),
                        s(&a["size"]),
                        s(&a["signed"]),
                    ]);
                }
                rows
            })
        }
        ArtifactsCommand::Show { artifact } => {
            let a = find_artifact(&r, &artifact)?;
            r.print(&a, || {
                let mut rows = vec![vec!["FIELD".into(), "VALUE".into()]];
                for k in [
                    "id",
                    "name",
                    "description",
                    "device_types_compatible",
                    "signed",
                    "size",
                    "modified",
                ] {
                    rows.push(vec![k.into(), s(&a[k])]);
                }
                rows.push(vec!["provides".into(), a["artifact_provides"].to_string()]);
                rows.push(vec!["depends".into(), a["artifact_depends"].to_string()]);
                for u in a["updates"].as_array().into_iter().flatten() {
                    for f in u["files"].as_array().into_iter().flatten() {
                        rows.push(vec![
                            format!("file ({})", s(&u["type_info"]["type"])),
                            format!(
                                "{} {} bytes sha256:{}",
                                s(&f["name"]),
                                s(&f["size"]),
                                s(&f["checksum"])
                            ),
                        ]);
                    }
                }
                rows
            })
        }
        ArtifactsCommand::Delete { artifact } => {
            let a = find_artifact(&r, &artifact)?;
            let id = s(&a["id"]);
            r.call("DELETE", &format!("/v1/deployments/artifacts/{id}"), None)?;
            r.done(
                &json!({"id": id, "deleted": true}),
                &format!("artifact {} ({id}) deleted", s(&a["name"])),
            )
        }
    }
}
