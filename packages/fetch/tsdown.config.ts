import { packageConfig } from '../../tsdown.shared.ts'

export default packageConfig({ index: 'src/index.ts', hono: 'src/hono.ts' })
