// The nomad project's globalSetup: one cluster for every file of the tier that shares it (Jest transforms the
// TypeScript it requires). Plain JS like its siblings, so the build's tsconfig (test/harness) stays Jest-free.
module.exports = () => require('../../nomad/shared-cluster').startSharedCluster();
