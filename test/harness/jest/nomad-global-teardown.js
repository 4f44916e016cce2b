// The nomad project's globalTeardown: stops the cluster globalSetup started, keeping its logs.
module.exports = () => require('../../nomad/shared-cluster').stopSharedCluster();
