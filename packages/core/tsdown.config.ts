import { packageConfig } from '../../tsdown.shared.ts'

export default packageConfig(['src/index.ts', 'src/testing.ts'])
