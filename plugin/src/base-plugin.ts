import type { Logger } from '../../common/logging';
import { PluginType } from '../../proto/gen/nomad/plugins/base/proto/base';
import type {
  ConfigSchemaResponse,
  PluginInfoResponse,
  SetConfigRequest,
  SetConfigResponse,
} from '../../proto/gen/nomad/plugins/base/proto/base';
import type { AllocationLookup } from './allocation-lookup';
import { parsePluginConfig, pluginConfigSpec } from './config';
import type { PluginConfig } from './config';
import { DriverError } from './errors';
import type { SidecarApi } from '../../common/sidecar-api/sidecar-api';

/** The name jobs use in `driver = "chain"`; Nomad also names the plugin after its file in plugin_dir. */
export const PLUGIN_NAME = 'chain';
/** The plugin's own version (PluginInfo.plugin_version, parsed by hashicorp/go-version); package.json's. */
export const PLUGIN_VERSION = '0.1.0';
/** The driver API versions served; Nomad v1.6.5 through today's releases speak "v0.1.0". */
export const DRIVER_API_VERSIONS = ['v0.1.0'];

/** What SetConfig builds: the configuration and the clients made from it. */
export interface PluginRuntime {
  readonly config: PluginConfig;
  readonly sidecar: SidecarApi;
  /** Absent when nomad_address = "": stops are then plain stops. */
  readonly lookup: AllocationLookup | undefined;
}

export type RuntimeFactory = (config: PluginConfig) => PluginRuntime;

/** hashicorp.nomad.plugins.base.proto.BasePlugin, and the runtime its SetConfig makes. */
export class BasePlugin {
  private runtime: PluginRuntime | undefined;

  constructor(
    private readonly version: string,
    private readonly makeRuntime: RuntimeFactory,
    private readonly log: Logger,
  ) {}

  pluginInfo(): PluginInfoResponse {
    return {
      type: PluginType.DRIVER,
      pluginApiVersions: [...DRIVER_API_VERSIONS],
      pluginVersion: this.version,
      name: PLUGIN_NAME,
    };
  }

  configSchema(): ConfigSchemaResponse {
    return { spec: pluginConfigSpec() };
  }

  /** Nomad's loader calls this more than once per process; each call replaces the runtime. */
  setConfig(request: SetConfigRequest): SetConfigResponse {
    const config = parsePluginConfig(request.msgpackConfig);
    const next = this.makeRuntime(config);
    this.runtime?.sidecar.close();
    this.runtime = next;
    this.log.info(
      {
        sidecarSocket: config.sidecarSocket,
        nomadAddress: config.nomadAddress,
        migrationMode: config.migrationMode,
        apiVersion: request.pluginApiVersion,
        clientPorts: request.nomadConfig?.driver
          ? `${request.nomadConfig.driver.ClientMinPort}-${request.nomadConfig.driver.ClientMaxPort}`
          : undefined,
      },
      'plugin configured',
    );
    return {};
  }

  /** The runtime, or NC_PLUGIN_NOT_CONFIGURED before Nomad's SetConfig. */
  current(): PluginRuntime {
    if (this.runtime === undefined) {
      throw new DriverError(
        'NC_PLUGIN_NOT_CONFIGURED',
        'the plugin has not been configured yet (SetConfig not called)',
      );
    }
    return this.runtime;
  }

  close(): void {
    this.runtime?.sidecar.close();
    this.runtime = undefined;
  }
}
