"A loopback stand-in for the Hugging Face Hub, shared by the download, guardrail and video2world tests."
import hashlib, json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA = "0123456789abcdef0123456789abcdef01234567"


class MockHub:
    """A few Hub endpoints on 127.0.0.1: `repos` maps (type, repo_id) to {path: bytes}; 'gated/*' repos answer 401 GatedRepo.
    Records every request path in `log`."""
    def __init__(self, repos):
        self.repos, self.log = repos, []
        hub = self
        class H(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_HEAD(self): self.do_GET()
            def do_GET(self):
                hub.log.append((self.command, self.path))
                code, body, headers = hub.answer(self.path.split("?")[0])
                self.send_response(code)
                for k, v in headers.items(): self.send_header(k, v)
                self.send_header("Content-Length", str(len(body))); self.end_headers()
                if self.command == "GET": self.wfile.write(body)
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_port}"
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def answer(self, path):
        js = {"Content-Type": "application/json"}
        for (kind, repo), files in self.repos.items():
            api = f"/api/{kind}s/{repo}"
            if repo.startswith("gated/") and (path.startswith(api) or f"/{repo}/" in path):
                return 401, b"{}", {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this repo is restricted"}
            if path == f"{api}/revision/main":
                return 200, json.dumps({"id": repo, "sha": SHA, "siblings": [{"rfilename": f} for f in files]}).encode(), js
            if path.startswith(f"{api}/revision/"):
                return 404, b"{}", {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"}
            if path.startswith(f"{api}/tree/{SHA}"):
                tree = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()} for f, b in files.items()]
                return 200, json.dumps(tree).encode(), js
            prefix = f"/{kind}s/{repo}/resolve/" if kind == "dataset" else f"/{repo}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix):].split("/", 1)[1]
                if name not in files: return 404, b"{}", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": SHA}
                b = files[name]
                return 200, b, {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha1(b).hexdigest()}"'}
        return 404, b"{}", {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}

    def close(self): self.srv.shutdown()


class GatedRepoHub(MockHub):
    "The loopback Hub, with one more repo answering like a gated repo whose terms were not accepted."
    def __init__(self, repos, gated_repo: str):
        self.gated_repo = gated_repo
        super().__init__(repos)

    def answer(self, path):
        if self.gated_repo in path: return 401, b'{}', {'X-Error-Code': 'GatedRepo', 'X-Error-Message': 'Access to this repo is restricted'}
        return super().answer(path)
