import { once } from 'node:events'
import { createServer } from 'node:http'
import type { MeterProvider as MeterProviderApi } from '@opentelemetry/api'
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
import { MeterProvider } from '@opentelemetry/sdk-metrics'

export interface MetricsEndpoint {
  readonly meterProvider: MeterProviderApi
  /** Where Prometheus scrapes: `http://host:port/metrics`. */
  readonly url: string
  close(): Promise<void>
}

/**
 * Serves the authenticator's metrics in Prometheus's text format on a port of
 * their own (`GET /metrics`), apart from the API: bound to loopback unless told otherwise.
 */
export async function startMetricsEndpoint(port: number, host: string): Promise<MetricsEndpoint> {
  const exporter = new PrometheusExporter({ preventServerStart: true })
  const meterProvider = new MeterProvider({ readers: [exporter] })
  const server = createServer((req, res) => {
    const path = req.url?.split('?')[0]
    if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) return exporter.getMetricsRequestHandler(req, res)
    res.statusCode = path === '/metrics' ? 405 : 404
    if (res.statusCode === 405) res.setHeader('allow', 'GET, HEAD')
    res.end()
  })
  server.listen(port, host)
  await once(server, 'listening')
  const address = server.address()
  const bound = typeof address === 'object' && address !== null ? address.port : port
  return {
    meterProvider,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics`,
    close: async () => {
      server.close()
      server.closeAllConnections()
      await meterProvider.shutdown()
    },
  }
}
