// Lets `node -r ./scripts/register.js file.ts` run the project's TypeScript without a build step, for the
// CLIs (cluster, doctor, start). Type checking is `npm run lint:types`' job; this only strips types.
//
// Transpiled files are kept on disk by the hash of what went in (source, path, compiler version and options):
// every local-mode sidecar, forecaster and CLI starts through here, and transpiling their ~80 files took ~3 s
// of CPU per process (the integration tier and the fault matrix start hundreds). An edited file has another
// hash, so nothing goes stale; a cache that cannot be written costs only the speed.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const CACHE_DIR =
  process.env.NOMAD_CHAIN_TS_CACHE || path.join(__dirname, '..', 'node_modules', '.cache', 'nomad-chain-ts');
const TS_VERSION = require('typescript/package.json').version;

let ts;
function compilerOptions() {
  ts ??= require('typescript');
  return {
    module: ts.ModuleKind.CommonJS,
    target: ts.ScriptTarget.ES2022,
    esModuleInterop: true,
    sourceMap: false,
    inlineSourceMap: true,
  };
}

// Bump when compilerOptions() changes: the options are part of what a cached file was made from.
const OPTIONS_VERSION = 1;

function transpiled(source, filename) {
  const key = crypto
    .createHash('sha256')
    .update(`${TS_VERSION}\0${OPTIONS_VERSION}\0${filename}\0`)
    .update(source)
    .digest('hex');
  const cached = path.join(CACHE_DIR, `${key}.js`);
  try {
    return fs.readFileSync(cached, 'utf8');
  } catch {
    // Not cached yet (or unreadable): transpile below.
  }
  // Only a miss loads the compiler itself (~0.4 s).
  const options = compilerOptions();
  const { outputText } = ts.transpileModule(source, { compilerOptions: options, fileName: filename });
  try {
    fs.mkdirSync(CACHE_DIR, { recursive: true });
    // Written aside and renamed: processes starting at once never read a half-written file.
    const partial = `${cached}.${process.pid}.tmp`;
    fs.writeFileSync(partial, outputText);
    fs.renameSync(partial, cached);
  } catch {
    // A read-only or full disk: run from memory.
  }
  return outputText;
}

require.extensions['.ts'] = (module, filename) => {
  module._compile(transpiled(fs.readFileSync(filename, 'utf8'), filename), filename);
};
