// Checks the objects `sluice rollout export --to argo-rollouts` wrote against Argo Rollouts'
// published models (@kubernetes-models/argo-rollouts, generated from its CRDs): each document
// of each file is read with js-yaml and validated by the model of its kind. Prints one line
// per object and exits 1 when any is invalid or of a kind without a model.
//
//   node argo_rollouts.mjs FILE...   (packages resolved from NODE_PATH's directory)
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.NODE_PATH;
const require = createRequire(join(modules, "x.js"));
const yaml = require("js-yaml");
// The models are ES modules only: imported by path.
const { Rollout, AnalysisTemplate } = await import(
  pathToFileURL(join(modules, "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/index.js")).href
);
const models = { Rollout, AnalysisTemplate };

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const document of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (document === null) continue;
    const Model = document.apiVersion === "argoproj.io/v1alpha1" ? models[document.kind] : undefined;
    const name = `${document.kind}/${document.metadata && document.metadata.name}`;
    if (!Model) {
      console.log(`${name}: no model for ${document.apiVersion} ${document.kind}`);
      failed++;
      continue;
    }
    try {
      new Model(document).validate();
      console.log(`${name}: ok`);
    } catch (error) {
      console.log(`${name}: INVALID ${error.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
