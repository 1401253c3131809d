"""docs/openapi.json as a checker of real answers: which operation a request hit, whether
the document describes the status it got, its content type, headers and body (JSON Schema
2020-12, with python3-jsonschema).

    contract = Contract(document)
    contract.check("GET", "/api/v1/info", response)   # AssertionError saying what differs
    contract.seen                                       # {(path template, method, status)}
"""

import json
import re

import jsonschema

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class Contract:
    def __init__(self, document):
        self.doc = document
        self.resolver = jsonschema.RefResolver(base_uri="", referrer=document)
        self.seen = set()
        # Literal paths win over templated ones (/api/v1/openapi.json is not {id}).
        self.templates = sorted(
            document["paths"], key=lambda p: (p.count("{"), -len(p))
        )

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.resolver.resolve(node["$ref"])[1]
        return node

    def template_of(self, path):
        path = path.split("?", 1)[0]
        for t in self.templates:
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t)) + "$"
            if re.match(pattern, path):
                return t
        return None

    def methods_of(self, template):
        return {m.upper() for m in self.doc["paths"][template] if m in HTTP_METHODS}

    def validate(self, schema, instance, what):
        try:
            jsonschema.Draft202012Validator(schema, resolver=self.resolver).validate(instance)
        except jsonschema.ValidationError as e:
            raise AssertionError(f"{what}: the answer does not match docs/openapi.json: "
                                 f"{e.message} at {list(e.absolute_path)}; body: {instance}")

    def check(self, method, path, response):
        """Fails unless docs/openapi.json describes `response` to `method path`."""
        what = f"{method} {path} -> {response.status}"
        template = self.template_of(path)
        assert template is not None, f"{what}: the path is not in docs/openapi.json"
        operation = self.doc["paths"][template].get(method.lower())
        if operation is None:
            # A method the path does not have: 405 naming exactly the documented ones.
            assert response.status == 405, f"{what}: the method is not in docs/openapi.json"
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed == self.methods_of(template), (
                f"{what}: Allow {allowed} but docs/openapi.json has {self.methods_of(template)}")
            described = self.resolve({"$ref": "#/components/responses/MethodNotAllowed"})
        else:
            described = operation["responses"].get(str(response.status))
            assert described is not None, (
                f"{what}: docs/openapi.json describes only {sorted(operation['responses'])} "
                f"for {method} {template}; body: {response.body[:300]!r}")
            described = self.resolve(described)
        self.seen.add((template, method.upper(), str(response.status)))
        for name in described.get("headers", {}):
            assert name.lower() in response.headers, f"{what}: no {name} header"
        content = described.get("content")
        if not content:
            assert response.body == b"", f"{what}: a body the document does not describe"
            return
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in content, f"{what}: Content-Type {media!r}, documented {sorted(content)}"
        schema = content[media].get("schema", {})
        if media == "application/json":
            self.validate(schema, json.loads(response.body), what)
        else:
            self.validate(schema, response.body.decode("utf-8"), what)

    def operations(self):
        """{(template, METHOD, status)} of every response the document describes."""
        out = set()
        for template, item in self.doc["paths"].items():
            for method, operation in item.items():
                if method in HTTP_METHODS:
                    for status in operation["responses"]:
                        out.add((template, method.upper(), status))
        return out

    def schemas(self):
        """Every Schema Object of the document (components and inline), with where it is."""
        found = []

        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "schema" and isinstance(v, dict):
                        found.append((f"{where}.schema", v))
                    walk(v, f"{where}.{k}")
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f"{where}[{i}]")

        walk(self.doc["paths"], "paths")
        walk(self.doc["components"]["responses"], "components.responses")
        walk(self.doc["components"]["parameters"], "components.parameters")
        found += [(f"components.schemas.{k}", v) for k, v in self.doc["components"]["schemas"].items()]
        return found
